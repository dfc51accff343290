//! The audit log: who changed what, when, from where, and the value before
//! and after. Every change the dashboard, the API or the CLI makes calls
//! `record` once it has happened, naming one of the `Action`s below; sign-ins,
//! failed sign-ins and sign-outs are recorded the same way. Entries are
//! listed on the Audit page and by `GET /api/v1/audit` (admins only), kept
//! `retention.audit_days`, and never edited (the database refuses it).

use std::net::IpAddr;

use chrono::Utc;
use serde::Serialize;
use serde_json::Value;

use crate::store::audit::{self as stored, NewEntry};
use crate::store::{Store, StoreResult};

/// Every kind of change recorded. A new change type is added here and to
/// the test that asserts an entry for each (tests/all/audit.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    SignIn,
    SignInFailed,
    SignOut,
    UserAdd,
    UserRemove,
    UserRole,
    UserPassword,
    AccountPassword,
    AccountSessionsEnd,
    AccountTotpOn,
    AccountTotpOff,
    UserTotpOff,
    TokenCreate,
    TokenRevoke,
    DomainAdd,
    DomainRemove,
    DomainSelectorAdd,
    GroupAdd,
    GroupRemove,
    GroupDomain,
    GroupMember,
    GroupMemberRemove,
    ApprovalAdd,
    ApprovalRevoke,
    AlertRuleAdd,
    AlertRuleChange,
    AlertRuleDelete,
    AlertChannelAdd,
    AlertChannelDelete,
    AlertResolve,
    DigestAdd,
    DigestChange,
    DigestDelete,
    MtaStsPolicyChange,
    MtaStsCertificateRenew,
    HostedDmarcChange,
    MessageReprocess,
    MessagesReprocessFailed,
    MessagesReprocessAll,
}

impl Action {
    pub const ALL: &'static [Action] = &[
        Action::SignIn,
        Action::SignInFailed,
        Action::SignOut,
        Action::UserAdd,
        Action::UserRemove,
        Action::UserRole,
        Action::UserPassword,
        Action::AccountPassword,
        Action::AccountSessionsEnd,
        Action::AccountTotpOn,
        Action::AccountTotpOff,
        Action::UserTotpOff,
        Action::TokenCreate,
        Action::TokenRevoke,
        Action::DomainAdd,
        Action::DomainRemove,
        Action::DomainSelectorAdd,
        Action::GroupAdd,
        Action::GroupRemove,
        Action::GroupDomain,
        Action::GroupMember,
        Action::GroupMemberRemove,
        Action::ApprovalAdd,
        Action::ApprovalRevoke,
        Action::AlertRuleAdd,
        Action::AlertRuleChange,
        Action::AlertRuleDelete,
        Action::AlertChannelAdd,
        Action::AlertChannelDelete,
        Action::AlertResolve,
        Action::DigestAdd,
        Action::DigestChange,
        Action::DigestDelete,
        Action::MtaStsPolicyChange,
        Action::MtaStsCertificateRenew,
        Action::HostedDmarcChange,
        Action::MessageReprocess,
        Action::MessagesReprocessFailed,
        Action::MessagesReprocessAll,
    ];

    /// As stored and filtered on: `group.verb`.
    pub fn key(self) -> &'static str {
        match self {
            Action::SignIn => "session.sign_in",
            Action::SignInFailed => "session.sign_in_failed",
            Action::SignOut => "session.sign_out",
            Action::UserAdd => "user.add",
            Action::UserRemove => "user.remove",
            Action::UserRole => "user.role",
            Action::UserPassword => "user.password",
            Action::AccountPassword => "account.password",
            Action::AccountSessionsEnd => "account.sessions_end",
            Action::AccountTotpOn => "account.totp_on",
            Action::AccountTotpOff => "account.totp_off",
            Action::UserTotpOff => "user.totp_off",
            Action::TokenCreate => "token.create",
            Action::TokenRevoke => "token.revoke",
            Action::DomainAdd => "domain.add",
            Action::DomainRemove => "domain.remove",
            Action::DomainSelectorAdd => "domain.selector_add",
            Action::GroupAdd => "group.add",
            Action::GroupRemove => "group.remove",
            Action::GroupDomain => "group.domain",
            Action::GroupMember => "group.member",
            Action::GroupMemberRemove => "group.member_remove",
            Action::ApprovalAdd => "approval.add",
            Action::ApprovalRevoke => "approval.revoke",
            Action::AlertRuleAdd => "alert_rule.add",
            Action::AlertRuleChange => "alert_rule.change",
            Action::AlertRuleDelete => "alert_rule.delete",
            Action::AlertChannelAdd => "alert_channel.add",
            Action::AlertChannelDelete => "alert_channel.delete",
            Action::AlertResolve => "alert.resolve",
            Action::DigestAdd => "digest.add",
            Action::DigestChange => "digest.change",
            Action::DigestDelete => "digest.delete",
            Action::MtaStsPolicyChange => "mta_sts.policy_change",
            Action::MtaStsCertificateRenew => "mta_sts.certificate_renew",
            Action::HostedDmarcChange => "hosted_dmarc.change",
            Action::MessageReprocess => "message.reprocess",
            Action::MessagesReprocessFailed => "message.reprocess_failed",
            Action::MessagesReprocessAll => "message.reprocess_all",
        }
    }

    pub fn parse(key: &str) -> Option<Action> {
        Action::ALL
            .iter()
            .copied()
            .find(|action| action.key() == key)
    }

    /// The groups (`user.`, `token.`, …), in the order of `ALL`, for the
    /// page's filter.
    pub fn groups() -> Vec<&'static str> {
        let mut groups: Vec<&'static str> = Vec::new();
        for action in Action::ALL {
            let key = action.key();
            let group = &key[..=key.find('.').expect("every key is group.verb")];
            if !groups.contains(&group) {
                groups.push(group);
            }
        }
        groups
    }
}

/// Who made a change, and from which address (none from the CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// A user name, `token:NAME`, or `cli:USER`.
    pub name: String,
    pub address: Option<IpAddr>,
}

impl Actor {
    pub fn new(name: impl Into<String>, address: Option<IpAddr>) -> Self {
        Actor {
            name: name.into(),
            address,
        }
    }

    /// The CLI, as the operating-system user who ran it.
    pub fn cli() -> Self {
        let user = ["SUDO_USER", "USER", "LOGNAME"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
            .unwrap_or_else(|| "unknown".to_string());
        Actor::new(format!("cli:{user}"), None)
    }
}

/// One change: what, to which thing, and its value before and after.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    action: Action,
    target: String,
    old: Option<Value>,
    new: Option<Value>,
}

impl Change {
    /// A change to `target` (a name, an id, a domain).
    pub fn of(action: Action, target: impl Into<String>) -> Self {
        Change {
            action,
            target: target.into(),
            old: None,
            new: None,
        }
    }

    /// What was there before (`None` or null: nothing).
    pub fn from(mut self, old: &impl Serialize) -> Self {
        self.old = json_value(old);
        self
    }

    /// What is there after (`None` or null: nothing).
    pub fn to(mut self, new: &impl Serialize) -> Self {
        self.new = json_value(new);
        self
    }
}

fn json_value(value: &impl Serialize) -> Option<Value> {
    serde_json::to_value(value)
        .ok()
        .filter(|value| !value.is_null())
}

/// Keys whose values never go into the log, however deep: a channel's
/// signing secret, a password, a token.
const HIDDEN_KEYS: &[&str] = &["secret", "password", "password_hash", "token", "token_hash"];

/// Replaces the values of `HIDDEN_KEYS` with `"(hidden)"`.
fn hide_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if HIDDEN_KEYS.contains(&key.as_str()) && !inner.is_null() {
                    *inner = Value::String("(hidden)".into());
                } else {
                    hide_secrets(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(hide_secrets),
        _ => {}
    }
}

fn json_text(value: Option<Value>) -> Option<String> {
    value.map(|mut value| {
        hide_secrets(&mut value);
        value.to_string()
    })
}

/// Adds `change` by `actor` to the log, now. Called after the change
/// succeeded; an error here is the caller's error (the change stands, and
/// the caller is told the log could not be written).
pub async fn record(store: &Store, actor: &Actor, change: Change) -> StoreResult<()> {
    let address = actor.address.map(|address| address.to_string());
    let entry = NewEntry {
        at: Utc::now(),
        actor: &actor.name,
        address: address.as_deref(),
        action: change.action.key(),
        target: &change.target,
        old_value: json_text(change.old),
        new_value: json_text(change.new),
    };
    stored::insert(store.db(), &entry).await?;
    tracing::info!(
        actor = %actor.name,
        address = address.as_deref().unwrap_or("-"),
        action = change.action.key(),
        target = %change.target,
        "audit"
    );
    Ok(())
}

/// Deletes entries older than `days` (0 keeps them for ever), batch by
/// batch; returns how many went.
pub async fn prune(store: &Store, days: u32, batch: u32) -> StoreResult<u64> {
    let now = Utc::now();
    let mut total = 0;
    loop {
        let deleted = stored::prune_batch(store.db(), days, batch, now).await?;
        total += deleted;
        if deleted < u64::from(batch.max(1)) {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for action in Action::ALL {
            assert!(seen.insert(action.key()), "{} twice", action.key());
            assert_eq!(Action::parse(action.key()), Some(*action));
            assert!(action.key().contains('.'));
        }
        assert!(Action::groups().contains(&"alert_rule."));
    }

    #[test]
    fn secrets_never_reach_the_log() {
        let change = Change::of(Action::AlertChannelAdd, "hook").to(&serde_json::json!({
            "name": "hook",
            "secret": "s3cret",
            "nested": [{"token": "dmarcd_abc", "password": null}],
        }));
        let text = json_text(change.new).unwrap();
        assert!(
            !text.contains("s3cret") && !text.contains("dmarcd_abc"),
            "{text}"
        );
        assert!(text.contains("\"name\":\"hook\""), "{text}");
        assert!(text.contains("\"password\":null"), "{text}");
    }
}
