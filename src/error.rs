//! The two kinds of failure, kept apart (see ARCHITECTURE.md): an API error, which the contract
//! answers with HTTP 200 and a code, and a fault of the server itself.

use std::fmt;

/// The error codes of spec §2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidApiKey,
    AccessDenied,
    UnknownMethod,
    InvalidArg,
    Unspecified,
    RetryLater,
    /// Only with rate limits on (`rate_limits.rs`).
    ApiCallLimitExceeded,
}

impl ErrorCode {
    pub fn wire(self) -> &'static str {
        match self {
            ErrorCode::InvalidApiKey => "invalid_api_key",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnknownMethod => "unknown_method",
            ErrorCode::InvalidArg => "invalid_arg",
            ErrorCode::Unspecified => "unspecified",
            ErrorCode::RetryLater => "retry_later",
            ErrorCode::ApiCallLimitExceeded => "api_call_limit_exceeded_for_api_key",
        }
    }

    /// Every code of §2.
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::InvalidApiKey,
        ErrorCode::AccessDenied,
        ErrorCode::UnknownMethod,
        ErrorCode::InvalidArg,
        ErrorCode::Unspecified,
        ErrorCode::RetryLater,
        ErrorCode::ApiCallLimitExceeded,
    ];

    pub fn from_wire(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.wire() == code)
    }

    /// The message an injected fault answers with this code (`faults.rs`): the wording of the
    /// real service's documentation for each code.
    pub fn stock_message(self) -> &'static str {
        match self {
            ErrorCode::InvalidApiKey => "Invalid API key",
            ErrorCode::AccessDenied => "Access denied",
            ErrorCode::UnknownMethod => "Unknown method",
            ErrorCode::InvalidArg => "Invalid argument",
            ErrorCode::Unspecified => "Unspecified error",
            ErrorCode::RetryLater => "Temporary server error, please retry later",
            ErrorCode::ApiCallLimitExceeded => "API call limit exceeded for API key",
        }
    }
}

/// Everything a request can end with other than success.
#[derive(Clone, Debug)]
pub enum Error {
    /// A refusal the contract describes: answered with HTTP 200, this code and message.
    Api { code: ErrorCode, message: String },
    /// The writer's queue stayed full, or the server is stopping: HTTP 503 `retry_later`.
    Overloaded(&'static str),
    /// A fault of the server (I/O, SQLite, a gone thread): logged in full, answered as HTTP 500
    /// without the details.
    Internal(String),
}

impl Error {
    pub fn invalid_arg(message: impl Into<String>) -> Error {
        Error::Api {
            code: ErrorCode::InvalidArg,
            message: message.into(),
        }
    }

    pub fn unspecified(message: impl Into<String>) -> Error {
        Error::Api {
            code: ErrorCode::Unspecified,
            message: message.into(),
        }
    }

    pub fn api(code: ErrorCode, message: impl Into<String>) -> Error {
        Error::Api {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api { code, message } => write!(f, "{}: {message}", code.wire()),
            Error::Overloaded(why) => write!(f, "overloaded: {why}"),
            Error::Internal(detail) => write!(f, "internal error: {detail}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    /// A full disk (or a database at its page limit) is a condition to retry after, not a fault.
    fn from(error: rusqlite::Error) -> Error {
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Error::Overloaded("the database's disk is full"),
            _ => Error::Internal(format!("sqlite: {error}")),
        }
    }
}

impl From<r2d2::Error> for Error {
    fn from(error: r2d2::Error) -> Error {
        Error::Internal(format!("reader pool: {error}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
