//! The HTTPS certificate: the operator's, or a self-signed one made on first start and kept in the data
//! dir. The self-signed one lives 397 days (browsers refuse longer ones), names every LAN address,
//! `localhost`, 127.0.0.1 and the host name, and is made anew on start when it expires within 30 days
//! or the machine's addresses changed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use time::{Duration, OffsetDateTime};

use crate::net::lan_addresses;

/// How long a made certificate is valid: under the 398 days browsers accept.
const VALIDITY_DAYS: i64 = 397;
/// Made anew on start when it has less than this left.
const RENEW_BEFORE_DAYS: i64 = 30;

pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Why it was made on this start; `None` when the one on disk was kept.
    pub generated: Option<String>,
}

/// The names the certificate must carry on this machine now.
fn wanted_names() -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(lan_addresses().iter().map(|ip| ip.to_string()));
    if let Some(host) = crate::edge::host_name() {
        if host != "localhost" {
            names.push(format!("{host}.local"));
            names.push(host);
        }
    }
    names
}

/// Returns the certificate to serve, making `data_dir/tls/{cert,key}.pem` when there is none yet or
/// the one there is due (see [`renewal_reason`]).
pub fn ensure_certificate(data_dir: &Path) -> Result<CertFiles> {
    ensure_certificate_for(data_dir, &wanted_names(), OffsetDateTime::now_utc())
}

fn ensure_certificate_for(
    data_dir: &Path,
    names: &[String],
    now: OffsetDateTime,
) -> Result<CertFiles> {
    let dir = data_dir.join("tls");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let why = if cert.exists() && key.exists() {
        let pem = std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
        match renewal_reason(&pem, names, now) {
            None => {
                return Ok(CertFiles {
                    cert,
                    key,
                    generated: None,
                })
            }
            Some(why) => why,
        }
    } else {
        "first start".to_string()
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (cert_pem, key_pem) = self_signed(names, now)?;
    // The key first: a cert without its key would be kept on the next start.
    write_private(&key, key_pem.as_bytes())?;
    std::fs::write(&cert, cert_pem).with_context(|| format!("writing {}", cert.display()))?;
    Ok(CertFiles {
        cert,
        key,
        generated: Some(why),
    })
}

/// A certificate and key (PEM) for `names`, valid from a day before `now` (clocks differ) for
/// [`VALIDITY_DAYS`].
fn self_signed(names: &[String], now: OffsetDateTime) -> Result<(String, String)> {
    let mut params = rcgen::CertificateParams::new(names.to_vec()).context("certificate names")?;
    params.not_before = now - Duration::days(1);
    params.not_after = params.not_before + Duration::days(VALIDITY_DAYS);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "parley (self-signed)");
    let key = rcgen::KeyPair::generate().context("generating a key")?;
    let cert = params
        .self_signed(&key)
        .context("generating a certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Why the certificate in `pem` must be made anew on this machine at `now`, if it must.
fn renewal_reason(pem: &[u8], names: &[String], now: OffsetDateTime) -> Option<String> {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(pem) else {
        return Some("the stored one is unreadable".into());
    };
    let Ok(cert) = pem.parse_x509() else {
        return Some("the stored one is unreadable".into());
    };
    let validity = cert.validity();
    let (from, until) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let now = now.unix_timestamp();
    const DAY: i64 = 86_400;
    if until - from > 398 * DAY {
        return Some("the stored one is valid for longer than browsers accept".into());
    }
    if until - now < RENEW_BEFORE_DAYS * DAY {
        return Some("the stored one expires within 30 days".into());
    }
    let mut has = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(n) => {
                    has.push(n.to_ascii_lowercase())
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                        _ => None,
                    };
                    has.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    let missing: Vec<&str> = names
        .iter()
        .filter(|n| !has.contains(&n.to_ascii_lowercase()))
        .map(String::as_str)
        .collect();
    (!missing.is_empty()).then(|| format!("new addresses or names: {}", missing.join(", ")))
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // `mode` only applies to a new file: an old key file may be wider.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(data)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(extra: &[&str]) -> Vec<String> {
        let mut n = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        n.extend(extra.iter().map(|s| s.to_string()));
        n
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("parley-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn certificate_is_made_once_and_reused() {
        let dir = temp_dir("reuse");
        let first = ensure_certificate(&dir).unwrap();
        assert!(first.generated.is_some());
        let cert = std::fs::read_to_string(&first.cert).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        let key_mode = std::fs::metadata(&first.key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            key_mode.permissions().mode() & 0o077,
            0,
            "the key is private"
        );
        let second = ensure_certificate(&dir).unwrap();
        assert_eq!(second.generated, None);
        assert_eq!(
            std::fs::read_to_string(&second.cert).unwrap(),
            cert,
            "same certificate after restart"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_made_certificate_is_valid_as_long_as_browsers_accept_and_names_everything() {
        let now = OffsetDateTime::now_utc();
        let wanted = names(&["192.168.1.20", "studio", "studio.local"]);
        let (pem, _) = self_signed(&wanted, now).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let v = cert.validity();
        let days = (v.not_after.timestamp() - v.not_before.timestamp()) / 86_400;
        assert!(days <= 398, "{days} days");
        assert!(v.not_before.timestamp() < now.unix_timestamp(), "valid now");
        assert!(
            v.not_after.timestamp() > (now + Duration::days(390)).unix_timestamp(),
            "a year and more left"
        );
        let (text, _) = self_signed(&wanted, now).unwrap();
        assert_eq!(renewal_reason(text.as_bytes(), &wanted, now), None);
    }

    #[test]
    fn renewed_when_it_expires_soon_or_names_changed() {
        let made = OffsetDateTime::now_utc();
        let wanted = names(&["192.168.1.20", "studio"]);
        let (pem, _) = self_signed(&wanted, made).unwrap();
        let pem = pem.as_bytes();
        // Kept for most of its life...
        assert_eq!(
            renewal_reason(pem, &wanted, made + Duration::days(300)),
            None
        );
        // It ends VALIDITY_DAYS - 1 days after it was made (it starts a day early): kept with 31 days
        // left, made anew in its last 30 days, or once expired.
        let end = VALIDITY_DAYS - 1;
        assert_eq!(
            renewal_reason(pem, &wanted, made + Duration::days(end - 31)),
            None
        );
        for day in [end - 29, end + 10] {
            let why = renewal_reason(pem, &wanted, made + Duration::days(day));
            assert!(why.is_some_and(|w| w.contains("30 days")), "day {day}");
        }
        // A new LAN address (DHCP) or host name: made anew; a gone one alone does not matter.
        let moved = names(&["192.168.1.21", "studio"]);
        let why = renewal_reason(pem, &moved, made).unwrap();
        assert!(why.contains("192.168.1.21"), "{why}");
        assert_eq!(renewal_reason(pem, &names(&["studio"]), made), None);
        assert!(renewal_reason(b"not a certificate", &wanted, made).is_some());
        // Older parley made certificates valid until 4096: browsers refuse those.
        let mut long = rcgen::CertificateParams::new(wanted.clone()).unwrap();
        long.not_before = made - Duration::days(1);
        long.not_after = made + Duration::days(3650);
        let key = rcgen::KeyPair::generate().unwrap();
        let long = long.self_signed(&key).unwrap().pem();
        assert!(
            renewal_reason(long.as_bytes(), &wanted, made).is_some_and(|w| w.contains("longer"))
        );
    }

    #[test]
    fn a_stored_certificate_that_is_due_is_replaced_on_start() {
        let dir = temp_dir("renew");
        let wanted = names(&["10.0.0.5"]);
        let long_ago = OffsetDateTime::now_utc() - Duration::days(380);
        let first = ensure_certificate_for(&dir, &wanted, long_ago).unwrap();
        let old = std::fs::read_to_string(&first.cert).unwrap();
        let again = ensure_certificate_for(&dir, &wanted, OffsetDateTime::now_utc()).unwrap();
        assert!(again.generated.is_some_and(|w| w.contains("30 days")));
        let new = std::fs::read_to_string(&again.cert).unwrap();
        assert_ne!(new, old);
        let kept = ensure_certificate_for(&dir, &wanted, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(kept.generated, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
