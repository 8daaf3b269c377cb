//! `restrict-ips`: allow or deny by the socket's peer address (never a header such as
//! X-Forwarded-For). A deny match refuses; with an allow list, an address outside it is
//! refused. Refused: 403 (tcp: close). Ends the phase when it refuses.

use std::net::IpAddr;

use serde::Deserialize;

use super::Exchange;
use crate::policy::action::{PolicyAction, Verdict};
use crate::policy::cidr::Cidr;
use crate::policy::expr::Var;
use crate::policy::response::LocalResponse;
use crate::policy::Phase;

/// Config of `restrict-ips` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestrictIpsConfig {
    /// CIDRs (or single addresses) allowed.
    #[serde(default)]
    pub allow: Vec<String>,
    /// CIDRs (or single addresses) refused.
    #[serde(default)]
    pub deny: Vec<String>,
    /// `false`: decide and record the result (`actions.ngrok.restrict_ips.*`) but
    /// let the traffic pass.
    #[serde(default = "super::enforced")]
    pub enforce: bool,
}

/// `restrict-ips`, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestrictIps {
    /// Each range with its text, as results name it.
    allow: Vec<(String, Cidr)>,
    deny: Vec<(String, Cidr)>,
    enforce: bool,
}

/// What restrict-ips decided for one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision<'p> {
    /// The address may pass.
    pub allowed: bool,
    /// The range that decided, as written: a deny that matched, else the allow that
    /// matched; `None` when none matched.
    pub matched: Option<&'p str>,
}

impl RestrictIps {
    /// Parses the lists; at least one must be non-empty.
    pub fn new(config: RestrictIpsConfig) -> Result<Self, String> {
        if config.allow.is_empty() && config.deny.is_empty() {
            return Err("give allow, deny or both".into());
        }
        let parse = |list: Vec<String>, name: &str| {
            list.into_iter()
                .map(|c| match Cidr::parse(&c) {
                    Ok(cidr) => Ok((c, cidr)),
                    Err(e) => Err(format!("{name}: {e}")),
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(RestrictIps {
            allow: parse(config.allow, "allow")?,
            deny: parse(config.deny, "deny")?,
            enforce: config.enforce,
        })
    }

    /// Decides for the peer of this exchange: a deny that matches refuses; with an
    /// allow list, an address outside it is refused.
    pub fn decide(&self, x: &dyn Exchange) -> Decision<'_> {
        let Ok(ip) = x.facts().string(Var::ClientIp).parse::<IpAddr>() else {
            return Decision {
                allowed: false,
                matched: None,
            };
        };
        fn find(list: &[(String, Cidr)], ip: IpAddr) -> Option<&str> {
            list.iter()
                .find(|(_, c)| c.contains(ip))
                .map(|(text, _)| text.as_str())
        }
        if let Some(denied) = find(&self.deny, ip) {
            return Decision {
                allowed: false,
                matched: Some(denied),
            };
        }
        let allowed = find(&self.allow, ip);
        Decision {
            allowed: self.allow.is_empty() || allowed.is_some(),
            matched: allowed,
        }
    }
}

/// The code of its refusal.
pub const REFUSED: &str = "ERR_IG_3301";

impl PolicyAction for RestrictIps {
    type Config = RestrictIpsConfig;

    fn compile(config: RestrictIpsConfig, _: Phase) -> Result<Self, String> {
        RestrictIps::new(config)
    }

    fn execute<'p>(&'p self, x: &mut dyn Exchange) -> Verdict<'p> {
        let decision = self.decide(x);
        if let Some(results) = x.results() {
            let result = &mut results.restrict_ips;
            result.action = if decision.allowed { "allow" } else { "deny" };
            result.matched_cidr.clear();
            result.matched_cidr.push_str(decision.matched.unwrap_or(""));
        }
        if decision.allowed || !self.enforce {
            return Verdict::Continue;
        }
        Verdict::Respond(LocalResponse::refusal(
            403,
            REFUSED,
            "your address is not allowed to reach this endpoint\n",
        ))
    }
}
