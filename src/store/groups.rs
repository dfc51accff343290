//! Domain groups (tenants) as stored: the groups, which group each domain
//! belongs to, who is a member with which role, and the `Scope` a user or
//! a group's token reads with (`crate::scope`).

use chrono::{DateTime, Utc};

use super::db::Db;
use super::StoreResult;
use crate::scope::{GroupRole, Membership, Scope};

/// The group every domain starts in.
pub const DEFAULT_GROUP: i64 = 1;

/// A group as listed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GroupRow {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A member of a group as listed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MemberRow {
    pub group_id: i64,
    pub user_id: i64,
    pub username: String,
    pub role: String,
}

#[derive(sqlx::FromRow)]
struct MembershipRow {
    group_id: i64,
    group_name: String,
    role: String,
    domain: Option<String>,
}

/// Folds rows ordered by group into memberships.
fn memberships(rows: Vec<MembershipRow>) -> Vec<Membership> {
    let mut out: Vec<Membership> = Vec::new();
    for row in rows {
        let Some(role) = GroupRole::parse(&row.role) else {
            continue;
        };
        if out.last().is_none_or(|last| last.group_id != row.group_id) {
            out.push(Membership {
                group_id: row.group_id,
                group: row.group_name,
                role,
                domains: Vec::new(),
            });
        }
        if let (Some(last), Some(domain)) = (out.last_mut(), row.domain) {
            last.domains.push(domain);
        }
    }
    for membership in &mut out {
        membership.domains.sort();
    }
    out
}

/// The groups `user_id` is a member of, with their domains.
pub async fn memberships_of(db: &Db, user_id: i64) -> StoreResult<Vec<Membership>> {
    let rows: Vec<MembershipRow> = db
        .fetch_all(&db.statement(
            "SELECT g.id AS group_id, g.name AS group_name, m.role, d.name AS domain \
             FROM group_members m JOIN domain_groups g ON g.id = m.group_id \
             LEFT JOIN domains d ON d.group_id = m.group_id \
             WHERE m.user_id = $1 ORDER BY g.id, d.name",
            vec![user_id.into()],
        ))
        .await?;
    Ok(memberships(rows))
}

/// What a user reads with: every domain for a global admin, else their
/// groups' domains.
pub async fn scope_of_user(db: &Db, user_id: i64, global_role: &str) -> StoreResult<Scope> {
    if global_role == "admin" {
        return Ok(Scope::All);
    }
    Ok(Scope::groups(memberships_of(db, user_id).await?))
}

/// What a token limited to `group_id` reads with: that group's domains,
/// with `role` at most, and at most its maker's role there (a maker who
/// left the group leaves the token seeing nothing). `maker` is the
/// maker's id and global role; None for an operator's token.
pub async fn scope_of_group_token(
    db: &Db,
    group_id: i64,
    role: GroupRole,
    maker: Option<(i64, &str)>,
) -> StoreResult<Scope> {
    let held = match maker {
        None | Some((_, "admin")) => Some(GroupRole::Owner),
        Some((user_id, _)) => memberships_of(db, user_id)
            .await?
            .into_iter()
            .find(|m| m.group_id == group_id)
            .map(|m| m.role),
    };
    let Some(held) = held else {
        return Ok(Scope::groups(Vec::new()));
    };
    let Some(group) = group(db, group_id).await? else {
        return Ok(Scope::groups(Vec::new()));
    };
    Ok(Scope::groups(vec![Membership {
        group_id,
        group: group.name,
        role: role.min(held),
        // Sorted here, byte-wise, as `Scope::role_for` searches them (the
        // database's collation may order them otherwise).
        domains: {
            let mut domains = domains_of(db, group_id).await?;
            domains.sort();
            domains
        },
    }]))
}

pub async fn groups(db: &Db) -> StoreResult<Vec<GroupRow>> {
    db.fetch_all(&db.statement(
        "SELECT id, name, created_at FROM domain_groups ORDER BY id",
        Vec::new(),
    ))
    .await
}

pub async fn group(db: &Db, id: i64) -> StoreResult<Option<GroupRow>> {
    db.fetch_optional(&db.statement(
        "SELECT id, name, created_at FROM domain_groups WHERE id = $1",
        vec![id.into()],
    ))
    .await
}

pub async fn group_named(db: &Db, name: &str) -> StoreResult<Option<GroupRow>> {
    db.fetch_optional(&db.statement(
        "SELECT id, name, created_at FROM domain_groups WHERE name = $1",
        vec![name.into()],
    ))
    .await
}

/// A new group's id; None when one of that name exists.
pub async fn insert_group(db: &Db, name: &str) -> StoreResult<Option<i64>> {
    let inserted: Option<(i64,)> = db
        .fetch_optional(&db.statement(
            "INSERT INTO domain_groups (name, created_at) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
            vec![name.into(), Utc::now().into()],
        ))
        .await?;
    Ok(inserted.map(|(id,)| id))
}

/// Removes a group: its domains go back to the default group, its members
/// and tokens go with it. False when there was none (the default group
/// cannot be removed).
pub async fn remove_group(db: &Db, id: i64) -> StoreResult<bool> {
    if id == DEFAULT_GROUP {
        return Ok(false);
    }
    let mut transaction = db.begin_durable().await?;
    transaction
        .execute(&transaction.statement(
            "UPDATE domains SET group_id = 1 WHERE group_id = $1",
            vec![id.into()],
        ))
        .await?;
    // Members and the group's tokens go with it (ON DELETE CASCADE).
    let removed = transaction
        .execute(&transaction.statement("DELETE FROM domain_groups WHERE id = $1", vec![id.into()]))
        .await?;
    transaction.commit().await?;
    Ok(removed > 0)
}

/// The domains of a group, sorted.
pub async fn domains_of(db: &Db, group_id: i64) -> StoreResult<Vec<String>> {
    let rows: Vec<(String,)> = db
        .fetch_all(&db.statement(
            "SELECT name FROM domains WHERE group_id = $1 ORDER BY name",
            vec![group_id.into()],
        ))
        .await?;
    Ok(rows.into_iter().map(|(name,)| name).collect())
}

/// The group a domain belongs to (None: dmarcd has not seen it).
pub async fn group_of_domain(db: &Db, domain: &str) -> StoreResult<Option<i64>> {
    let row: Option<(i64,)> = db
        .fetch_optional(&db.statement(
            "SELECT group_id FROM domains WHERE name = $1",
            vec![domain.into()],
        ))
        .await?;
    Ok(row.map(|(id,)| id))
}

/// Puts `domain` in group `group_id`, adding it (as added by hand) when
/// dmarcd has not seen it; the group it was in before, if any.
pub async fn set_domain_group(db: &Db, domain: &str, group_id: i64) -> StoreResult<Option<i64>> {
    let before = group_of_domain(db, domain).await?;
    db.execute(&db.statement(
        "INSERT INTO domains (name, origin, created_at, group_id) VALUES ($1, 'user', $2, $3) \
         ON CONFLICT (name) DO UPDATE SET group_id = excluded.group_id",
        vec![domain.into(), Utc::now().into(), group_id.into()],
    ))
    .await?;
    Ok(before)
}

pub async fn members(db: &Db, group_id: i64) -> StoreResult<Vec<MemberRow>> {
    db.fetch_all(&db.statement(
        "SELECT m.group_id, m.user_id, u.username, m.role FROM group_members m \
         JOIN users u ON u.id = m.user_id WHERE m.group_id = $1 ORDER BY u.username",
        vec![group_id.into()],
    ))
    .await
}

/// Makes `user_id` a member of `group_id` with `role` (or changes their
/// role); their role before, if they were a member.
pub async fn set_member(
    db: &Db,
    group_id: i64,
    user_id: i64,
    role: GroupRole,
) -> StoreResult<Option<String>> {
    let before: Option<(String,)> = db
        .fetch_optional(&db.statement(
            "SELECT role FROM group_members WHERE group_id = $1 AND user_id = $2",
            vec![group_id.into(), user_id.into()],
        ))
        .await?;
    db.execute(&db.statement(
        "INSERT INTO group_members (group_id, user_id, role) VALUES ($1, $2, $3) \
         ON CONFLICT (group_id, user_id) DO UPDATE SET role = excluded.role",
        vec![group_id.into(), user_id.into(), role.key().into()],
    ))
    .await?;
    Ok(before.map(|(role,)| role))
}

/// Removes a member; their role, if they were one.
pub async fn remove_member(db: &Db, group_id: i64, user_id: i64) -> StoreResult<Option<String>> {
    let removed: Option<(String,)> = db
        .fetch_optional(&db.statement(
            "DELETE FROM group_members WHERE group_id = $1 AND user_id = $2 RETURNING role",
            vec![group_id.into(), user_id.into()],
        ))
        .await?;
    Ok(removed.map(|(role,)| role))
}

/// Whether a user is in any group (a viewer in none sees nothing).
pub async fn has_membership(db: &Db, user_id: i64) -> StoreResult<bool> {
    let (count,): (i64,) = db
        .fetch_one(&db.statement(
            "SELECT count(*) FROM group_members WHERE user_id = $1",
            vec![user_id.into()],
        ))
        .await?;
    Ok(count > 0)
}

/// Whether `scope` sees every domain there is: everyone who sees all, and
/// members of the default group while it is the only group (a single-team
/// install, where what applies to every domain is theirs too).
pub async fn sees_every_domain(db: &Db, scope: &Scope) -> StoreResult<bool> {
    if scope.is_all() {
        return Ok(true);
    }
    if scope.role_in_group(DEFAULT_GROUP).is_none() {
        return Ok(false);
    }
    let (count,): (i64,) = db
        .fetch_one(&db.statement("SELECT count(*) FROM domain_groups", Vec::new()))
        .await?;
    Ok(count == 1)
}

/// When `domain` changes group, what its former group set up for it stops:
/// its alert rules (made by that group's analysts, telling that group's
/// channels) and the digest schedules naming it (mailing that group's
/// recipients) are disabled, for an admin to look at. Their ids.
pub async fn disable_for_domain(db: &Db, domain: &str) -> StoreResult<(Vec<i64>, Vec<i64>)> {
    let rules: Vec<(i64,)> = db
        .fetch_all(&db.statement(
            "UPDATE alert_rules SET enabled = $2 WHERE domain = $1 AND enabled = $3 RETURNING id",
            vec![domain.into(), false.into(), true.into()],
        ))
        .await?;
    let mut schedules = Vec::new();
    for schedule in super::digests::schedules(db).await? {
        if schedule.enabled && schedule.domains.iter().any(|d| d == domain) {
            db.execute(&db.statement(
                "UPDATE digest_schedules SET enabled = $2 WHERE id = $1",
                vec![schedule.id.into(), false.into()],
            ))
            .await?;
            schedules.push(schedule.id);
        }
    }
    Ok((rules.into_iter().map(|(id,)| id).collect(), schedules))
}
