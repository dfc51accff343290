//! Domain groups (tenants) as the CLI, the API and the Groups page manage
//! them: who may do what (global admins make and remove groups and move
//! domains between them; a group's owners manage its members), each change
//! recorded in the audit log. `store::groups` keeps them; `scope` says
//! what a member sees.

use serde::Serialize;

use crate::audit::{self, Action, Actor, Change};
use crate::scope::{GroupRole, Scope};
use crate::store::groups::{self as stored, DEFAULT_GROUP};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// A value the caller can fix (400).
    #[error("{0}")]
    Invalid(String),
    /// Clashes with what is there: a name taken, the default group (409).
    #[error("{0}")]
    Conflict(String),
    /// Not the caller's to change (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such group, user or domain the caller may see (404).
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A group as listed: its domains, and its members for those who manage it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GroupInfo {
    pub id: i64,
    pub name: String,
    pub domains: Vec<String>,
    /// Members and their roles (shown to admins and the group's owners).
    pub members: Vec<MemberInfo>,
    /// The caller's role in it (`owner` for admins).
    pub your_role: GroupRole,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MemberInfo {
    pub user: String,
    pub role: String,
}

/// Group names: what users and the audit log call them.
fn check_name(name: &str) -> Result<String, GroupError> {
    let name = name.trim();
    let fine = name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(name.to_string())
    } else {
        Err(GroupError::Invalid(format!(
            "{name:?}: a group name is 1–64 letters, digits, '-', '_' or '.', beginning with a letter or digit"
        )))
    }
}

fn require_admin(scope: &Scope) -> Result<(), GroupError> {
    if scope.is_all() {
        Ok(())
    } else {
        Err(GroupError::Forbidden(
            "only admins make, remove and fill groups".into(),
        ))
    }
}

/// The group named `name` that `scope` belongs to (admins: any).
async fn group_seen(
    store: &Store,
    scope: &Scope,
    name: &str,
) -> Result<stored::GroupRow, GroupError> {
    let missing = || GroupError::NotFound(format!("no group {name:?}"));
    let group = stored::group_named(store.db(), name.trim())
        .await?
        .ok_or_else(missing)?;
    if scope.role_in_group(group.id).is_none() {
        return Err(missing());
    }
    Ok(group)
}

/// The groups `scope` belongs to (admins: all), with their domains.
pub async fn list(store: &Store, scope: &Scope) -> Result<Vec<GroupInfo>, GroupError> {
    let db = store.db();
    let mut out = Vec::new();
    for group in stored::groups(db).await? {
        let Some(role) = scope.role_in_group(group.id) else {
            continue;
        };
        let members = if role == GroupRole::Owner {
            stored::members(db, group.id)
                .await?
                .into_iter()
                .map(|m| MemberInfo {
                    user: m.username,
                    role: m.role,
                })
                .collect()
        } else {
            Vec::new()
        };
        out.push(GroupInfo {
            domains: stored::domains_of(db, group.id).await?,
            id: group.id,
            name: group.name,
            members,
            your_role: role,
        });
    }
    Ok(out)
}

/// Makes a group (admins).
pub async fn create(
    store: &Store,
    actor: &Actor,
    scope: &Scope,
    name: &str,
) -> Result<i64, GroupError> {
    require_admin(scope)?;
    let name = check_name(name)?;
    let id = stored::insert_group(store.db(), &name)
        .await?
        .ok_or_else(|| GroupError::Conflict(format!("a group named {name:?} exists already")))?;
    audit::record(store, actor, Change::of(Action::GroupAdd, &name)).await?;
    Ok(id)
}

/// Removes a group (admins): its domains go back to the default group,
/// its members leave it, its tokens are deleted.
pub async fn remove(
    store: &Store,
    actor: &Actor,
    scope: &Scope,
    name: &str,
) -> Result<(), GroupError> {
    require_admin(scope)?;
    let group = group_seen(store, scope, name).await?;
    if group.id == DEFAULT_GROUP {
        return Err(GroupError::Conflict(
            "the default group holds every domain no other group has: it stays".into(),
        ));
    }
    let domains = stored::domains_of(store.db(), group.id).await?;
    stored::remove_group(store.db(), group.id).await?;
    // Its domains go to the default group: what the group set up for them stops.
    let (mut rules, mut schedules) = (Vec::new(), Vec::new());
    for domain in &domains {
        let (r, s) = stored::disable_for_domain(store.db(), domain).await?;
        rules.extend(r);
        schedules.extend(s);
    }
    let change = Change::of(Action::GroupRemove, &group.name)
        .from(&serde_json::json!({ "domains": domains }))
        .to(&serde_json::json!({
            "disabled_alert_rules": rules,
            "disabled_digest_schedules": schedules,
        }));
    audit::record(store, actor, change).await?;
    Ok(())
}

/// Puts a domain in a group (admins); adds it when dmarcd has not seen it.
pub async fn assign_domain(
    store: &Store,
    actor: &Actor,
    scope: &Scope,
    group: &str,
    domain: &str,
) -> Result<(), GroupError> {
    require_admin(scope)?;
    let group = group_seen(store, scope, group).await?;
    let domain = crate::scope::normalized(domain);
    if !crate::domain::is_domain_name(&domain) {
        return Err(GroupError::Invalid(format!(
            "{domain:?} is not a domain name"
        )));
    }
    let before_id = stored::set_domain_group(store.db(), &domain, group.id).await?;
    let before = match before_id {
        Some(id) => stored::group(store.db(), id).await?.map(|g| g.name),
        None => None,
    };
    let stopped = match before_id {
        Some(id) if id != group.id => Some(stored::disable_for_domain(store.db(), &domain).await?),
        _ => None,
    };
    let change = Change::of(Action::GroupDomain, &domain)
        .from(&serde_json::json!({ "group": before }))
        .to(&serde_json::json!({
            "group": group.name,
            "disabled_alert_rules": stopped.as_ref().map(|(rules, _)| rules),
            "disabled_digest_schedules": stopped.as_ref().map(|(_, schedules)| schedules),
        }));
    audit::record(store, actor, change).await?;
    Ok(())
}

/// The group and user of a membership `scope` manages (it owns the group).
async fn membership_managed(
    store: &Store,
    scope: &Scope,
    group: &str,
    user: &str,
) -> Result<(stored::GroupRow, crate::store::accounts::UserRow), GroupError> {
    let group = group_seen(store, scope, group).await?;
    if scope.role_in_group(group.id) != Some(GroupRole::Owner) {
        return Err(GroupError::Forbidden(format!(
            "only admins and owners of {} manage its members",
            group.name
        )));
    }
    let found = crate::store::accounts::user(store.db(), user.trim())
        .await?
        .ok_or_else(|| GroupError::NotFound(format!("no user {user:?}")))?;
    Ok((group, found))
}

/// Makes `user` a member of `group` with `role`, or changes their role
/// (admins, and the group's owners).
pub async fn set_member(
    store: &Store,
    actor: &Actor,
    scope: &Scope,
    group: &str,
    user: &str,
    role: GroupRole,
) -> Result<(), GroupError> {
    let (group, found) = membership_managed(store, scope, group, user).await?;
    let before = stored::set_member(store.db(), group.id, found.id, role).await?;
    let change = Change::of(
        Action::GroupMember,
        format!("{}/{}", group.name, found.username),
    )
    .from(&serde_json::json!({ "role": before }))
    .to(&serde_json::json!({ "role": role.key() }));
    audit::record(store, actor, change).await?;
    Ok(())
}

/// Takes `user` out of `group` (admins, and the group's owners).
pub async fn remove_member(
    store: &Store,
    actor: &Actor,
    scope: &Scope,
    group: &str,
    user: &str,
) -> Result<(), GroupError> {
    let (group, found) = membership_managed(store, scope, group, user).await?;
    let Some(before) = stored::remove_member(store.db(), group.id, found.id).await? else {
        return Err(GroupError::NotFound(format!(
            "{} is not a member of {}",
            found.username, group.name
        )));
    };
    let change = Change::of(
        Action::GroupMemberRemove,
        format!("{}/{}", group.name, found.username),
    )
    .from(&serde_json::json!({ "role": before }));
    audit::record(store, actor, change).await?;
    Ok(())
}
