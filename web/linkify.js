// Plain text with its web addresses made clickable, built from text nodes and <a> elements only: nothing
// in the text is ever parsed as HTML.

// http(s)://… or www.… up to the next space; trailing punctuation is trimmed below.
const URL_RE = /\b(?:https?:\/\/|www\.)[^\s<>"]+/gi;
const TRAILING = /[.,;:!?'"…]+$/;

/** Drops sentence punctuation and an unmatched closing bracket from the end of a found address. */
function trimUrl(raw) {
  let url = raw.replace(TRAILING, '');
  for (const [open, close] of [['(', ')'], ['[', ']']]) {
    while (url.endsWith(close) && url.split(close).length > url.split(open).length) {
      url = url.slice(0, -1).replace(TRAILING, '');
    }
  }
  return url;
}

/** The address to open for `text`, or null when it is not a usable http(s) URL. */
export function safeHref(text) {
  try {
    const u = new URL(/^www\./i.test(text) ? `https://${text}` : text);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

/**
 * A fragment holding `text` as text nodes, with every http(s) address turned into a link that opens in a
 * new tab without access to this page (rel=noopener).
 */
export function linkify(text) {
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(URL_RE)) {
    const url = trimUrl(match[0]);
    const href = safeHref(url);
    if (!href) continue;
    if (match.index > last) frag.appendChild(document.createTextNode(text.slice(last, match.index)));
    const a = document.createElement('a');
    a.href = href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer nofollow';
    a.textContent = url;
    frag.appendChild(a);
    last = match.index + url.length;
  }
  if (last < text.length) frag.appendChild(document.createTextNode(text.slice(last)));
  return frag;
}
