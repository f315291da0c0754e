//! What can go wrong, with enough detail to tell a person what to do.

use parley_proto::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered a request with an `error`.
    #[error("the server refused: {code} ({message})", code = .code.as_str())]
    Refused { code: ErrorCode, message: String },
    /// The server URL could not be used.
    #[error("bad server address {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach the server at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("signalling connection: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// The server closed the signalling connection.
    #[error("the server closed the connection")]
    Closed,
    /// The server did not answer in time.
    #[error("no answer from the server within {0} s while waiting for {1}")]
    Timeout(u64, &'static str),
    /// The server sent something we did not expect at this point.
    #[error("unexpected message from the server: {0}")]
    Protocol(String),
    /// WebRTC (str0m) failed: SDP, ICE, DTLS.
    #[error("WebRTC: {0}")]
    Rtc(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A media file could not be used.
    #[error("{0}")]
    Media(String),
    /// The session task is gone (it ended or panicked).
    #[error("the session has ended")]
    Ended,
}

impl ClientError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> ClientError {
        ClientError::Io {
            context: context.into(),
            source,
        }
    }

    /// The server's error code, when the server refused a request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(e))
    }
}
