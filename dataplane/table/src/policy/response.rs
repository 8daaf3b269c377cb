//! The answers actions make: a status, headers and a body, borrowed from the policy
//! where they are written there, rendered where they interpolate `${…}`.

use std::borrow::Cow;

use smallvec::SmallVec;

/// The header that marks responses innergate made itself; an upstream can never
/// produce it (the data plane strips it from every upstream response head).
pub const ERROR_CODE_HEADER: &str = "innergate-error-code";

/// A response an action answers with instead of the upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse<'p> {
    /// The status code.
    pub status: u16,
    /// Header fields, in order; names are checked tokens, values carry no CR/LF/NUL.
    pub headers: SmallVec<[(&'p str, Cow<'p, str>); 4]>,
    /// The body; its length becomes Content-Length.
    pub body: Cow<'p, str>,
}

impl<'p> LocalResponse<'p> {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        LocalResponse {
            status,
            headers: SmallVec::new(),
            body: Cow::Borrowed(""),
        }
    }

    /// A refusal by a policy action: `status`, a one-line text body for a person, and
    /// `innergate-error-code: code`.
    pub fn refusal(status: u16, code: &'static str, message: &'static str) -> Self {
        LocalResponse::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .header(ERROR_CODE_HEADER, code)
            .body(message)
    }

    /// Adds a header field.
    pub fn header(mut self, name: &'p str, value: impl Into<Cow<'p, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Cow<'p, str>>) -> Self {
        self.body = body.into();
        self
    }

    /// The `innergate-error-code` this response carries, if it is a refusal.
    pub fn error_code(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(ERROR_CODE_HEADER))
            .map(|(_, value)| value.as_ref())
    }
}
