//! What can go wrong when a recording is finalized. A corrupt or cut journal is not an error (it
//! finalizes to what it holds); a journal that cannot be read at all, a codec we cannot handle, or an
//! output that cannot be written is.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum FinalizeError {
    Io(io::Error),
    /// The journal holds a codec this finalizer does not handle (video that is neither VP8 nor H.264,
    /// H.264 given to the WebM muxer, or audio that is not Opus).
    UnsupportedCodec {
        codec: String,
    },
    /// An audio journal was given where video was expected, or the other way round.
    WrongMedia {
        expected: &'static str,
    },
    /// A video journal with no complete keyframe: there is nothing to start a file at.
    NoKeyframe,
    /// An H.264 journal whose keyframes come with no SPS and PPS (or none that parses): the file's
    /// codec private and picture size cannot be made.
    NoParameterSets,
    Opus(opus::Error),
    Flac(String),
    Webm(String),
    Matroska(String),
}

impl fmt::Display for FinalizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FinalizeError::Io(e) => write!(f, "i/o: {e}"),
            FinalizeError::UnsupportedCodec { codec } => write!(f, "unsupported codec {codec:?}"),
            FinalizeError::WrongMedia { expected } => write!(f, "expected a journal of {expected}"),
            FinalizeError::NoKeyframe => write!(f, "no complete keyframe in the video journal"),
            FinalizeError::NoParameterSets => {
                write!(f, "no usable H.264 SPS and PPS in the video journal")
            }
            FinalizeError::Opus(e) => write!(f, "opus: {e}"),
            FinalizeError::Flac(e) => write!(f, "flac: {e}"),
            FinalizeError::Webm(e) => write!(f, "webm: {e}"),
            FinalizeError::Matroska(e) => write!(f, "matroska: {e}"),
        }
    }
}

impl std::error::Error for FinalizeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FinalizeError::Io(e) => Some(e),
            FinalizeError::Opus(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for FinalizeError {
    fn from(e: io::Error) -> Self {
        FinalizeError::Io(e)
    }
}

impl From<opus::Error> for FinalizeError {
    fn from(e: opus::Error) -> Self {
        FinalizeError::Opus(e)
    }
}

pub type Result<T> = std::result::Result<T, FinalizeError>;
