//! What actions tell the rules after them: the hosted service's result variables,
//! `actions.ngrok.<action>.*`. Each value is that of the action's last run in the
//! exchange (results are not concatenated, as the hosted docs say); before an action
//! of its type ran, its variables read empty, `false` or `[]`.
//!
//! The store is created by the first action that records a result, so an exchange
//! whose policy records none pays nothing for it.

/// The results of the actions that ran in one exchange.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActionResults {
    /// `actions.ngrok.restrict_ips.*`.
    pub restrict_ips: RestrictIpsResult,
    /// `actions.ngrok.basic_auth.credentials.*`.
    pub basic_auth: BasicAuthResult,
    /// `actions.ngrok.rate_limit.*`.
    pub rate_limit: RateLimitResult,
    /// `actions.ngrok.redirect.*`.
    pub redirect: RewriteResult,
    /// `actions.ngrok.url_rewrite.*`.
    pub url_rewrite: RewriteResult,
    /// `actions.ngrok.remove_headers.headers_removed`.
    pub headers_removed: Vec<String>,
    /// `actions.ngrok.add_headers.headers_added`: names and values, in order.
    pub headers_added: Vec<(String, String)>,
    /// `actions.ngrok.log.metadata`: keys and rendered values, in order.
    pub log_metadata: Vec<(String, String)>,
    /// `actions.ngrok.forward_internal.url`: the target a forward that failed (with
    /// `on_error: continue`) tried. Its `error.*` live with the data plane's error.
    pub forward_url: String,
}

/// What `restrict-ips` decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestrictIpsResult {
    /// `allow` or `deny` (empty before a restrict-ips ran).
    pub action: &'static str,
    /// The CIDR that matched the client's address, as written; empty if none did.
    pub matched_cidr: String,
}

/// What `basic-auth` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BasicAuthResult {
    /// Basic credentials were in the Authorization header.
    pub presented: bool,
    /// Their user name.
    pub username: String,
    /// They are among the accepted ones.
    pub authorized: bool,
}

/// What `rate-limit` counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimitResult {
    /// The bucket the request was counted in: its `bucket_key` values, joined by
    /// `,`.
    pub bucket_key: String,
    /// The request was over the limit.
    pub limited: bool,
}

/// What `redirect` or `url-rewrite` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RewriteResult {
    /// The URL it made (the Location, or the URL the upstream receives).
    pub url: String,
    /// The text `from` matched, then each of its capture groups (an unmatched group
    /// as empty).
    pub matches: Vec<String>,
    /// Why it could not run (a `from` whose interpolated regex does not compile):
    /// code and message; empty when it ran.
    pub error: (&'static str, String),
}

impl RewriteResult {
    const NONE: RewriteResult = RewriteResult {
        url: String::new(),
        matches: Vec::new(),
        error: ("", String::new()),
    };
}

impl ActionResults {
    /// The results of an exchange in which no action recorded any.
    pub const NONE: ActionResults = ActionResults {
        restrict_ips: RestrictIpsResult {
            action: "",
            matched_cidr: String::new(),
        },
        basic_auth: BasicAuthResult {
            presented: false,
            username: String::new(),
            authorized: false,
        },
        rate_limit: RateLimitResult {
            bucket_key: String::new(),
            limited: false,
        },
        redirect: RewriteResult::NONE,
        url_rewrite: RewriteResult::NONE,
        headers_removed: Vec::new(),
        headers_added: Vec::new(),
        log_metadata: Vec::new(),
        forward_url: String::new(),
    };
}

/// The results of one exchange, made by the first action that records one.
#[derive(Clone, Debug, Default)]
pub struct Results(Option<Box<ActionResults>>);

/// What an exchange without results reads.
static NONE: ActionResults = ActionResults::NONE;

impl ActionResults {
    /// The results of an exchange in which no action recorded any, to lend.
    pub fn none() -> &'static ActionResults {
        &NONE
    }
}

impl Results {
    /// What the actions so far recorded.
    pub fn get(&self) -> &ActionResults {
        self.0.as_deref().unwrap_or(&NONE)
    }

    /// For an action to record its result.
    pub fn get_mut(&mut self) -> &mut ActionResults {
        self.0.get_or_insert_with(Box::default)
    }

    /// Forgets every result (a new exchange starts).
    pub fn clear(&mut self) {
        self.0 = None;
    }
}
