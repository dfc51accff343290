//! What a caller may see and do: every domain (a global admin, an
//! operator's token, the server's own tasks), or the domains of the groups
//! they are a member of, with their role in each group. Every read of the
//! query layer takes a `Scope` (`Filter::parse`, the by-id lookups, the
//! lists), so that a page or endpoint cannot show another group's data by
//! forgetting a check.

use std::sync::Arc;

use serde::Serialize;

use crate::store::Sql;

/// A role in a domain group, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupRole {
    /// Reads the group's domains.
    Viewer,
    /// Also approves sources, changes alert rules and digests, reprocesses.
    Analyst,
    /// Also manages the group's members and domains.
    Owner,
}

impl GroupRole {
    pub const ALL: [GroupRole; 3] = [GroupRole::Viewer, GroupRole::Analyst, GroupRole::Owner];

    pub fn key(self) -> &'static str {
        match self {
            GroupRole::Viewer => "viewer",
            GroupRole::Analyst => "analyst",
            GroupRole::Owner => "owner",
        }
    }

    pub fn parse(text: &str) -> Option<GroupRole> {
        GroupRole::ALL
            .into_iter()
            .find(|role| role.key() == text.trim().to_ascii_lowercase())
    }
}

/// One group a caller belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub group_id: i64,
    pub group: String,
    pub role: GroupRole,
    /// The group's domains, lower case, sorted.
    pub domains: Vec<String>,
}

/// Which domains a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every domain, every power: global admins, operators' tokens, the
    /// server itself.
    All,
    /// The domains of these groups.
    Groups(Arc<Vec<Membership>>),
}

/// Safe by default: a scope nobody chose sees nothing.
impl Default for Scope {
    fn default() -> Self {
        Scope::groups(Vec::new())
    }
}

impl Scope {
    pub fn groups(memberships: Vec<Membership>) -> Scope {
        Scope::Groups(Arc::new(memberships))
    }

    /// Sees every domain (and what belongs to none: failed messages,
    /// mailboxes, the audit log).
    pub fn is_all(&self) -> bool {
        matches!(self, Scope::All)
    }

    /// The caller's role for `domain`: `None` when they may not see it.
    pub fn role_for(&self, domain: &str) -> Option<GroupRole> {
        match self {
            Scope::All => Some(GroupRole::Owner),
            Scope::Groups(memberships) => {
                let domain = normalized(domain);
                memberships
                    .iter()
                    .filter(|m| m.domains.binary_search(&domain).is_ok())
                    .map(|m| m.role)
                    .max()
            }
        }
    }

    pub fn sees(&self, domain: &str) -> bool {
        self.role_for(domain).is_some()
    }

    /// Whether the caller has at least `role` for `domain`.
    pub fn may(&self, domain: &str, role: GroupRole) -> bool {
        self.role_for(domain).is_some_and(|held| held >= role)
    }

    /// Whether the caller has at least `role` in some group (or is global).
    pub fn may_somewhere(&self, role: GroupRole) -> bool {
        match self {
            Scope::All => true,
            Scope::Groups(memberships) => memberships.iter().any(|m| m.role >= role),
        }
    }

    /// The caller's role in group `group_id` (global: owner of every group).
    pub fn role_in_group(&self, group_id: i64) -> Option<GroupRole> {
        match self {
            Scope::All => Some(GroupRole::Owner),
            Scope::Groups(memberships) => memberships
                .iter()
                .find(|m| m.group_id == group_id)
                .map(|m| m.role),
        }
    }

    pub fn memberships(&self) -> &[Membership] {
        match self {
            Scope::All => &[],
            Scope::Groups(memberships) => memberships,
        }
    }

    /// The domains seen, sorted: `None` for every domain.
    pub fn domains(&self) -> Option<Vec<String>> {
        match self {
            Scope::All => None,
            Scope::Groups(memberships) => {
                let mut domains: Vec<String> = memberships
                    .iter()
                    .flat_map(|m| m.domains.iter().cloned())
                    .collect();
                domains.sort();
                domains.dedup();
                Some(domains)
            }
        }
    }

    /// ` AND <column> IN (<the domains seen>)`; nothing for every domain,
    /// a condition that holds for no row when no domain is seen.
    pub fn push_condition(&self, sql: &mut Sql, column: &str) {
        let Some(domains) = self.domains() else {
            return;
        };
        if domains.is_empty() {
            sql.push(" AND 1 = 0");
            return;
        }
        sql.push(" AND ").push(column).push(" IN (");
        for (i, domain) in domains.into_iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(domain);
        }
        sql.push(")");
    }
}

impl Scope {
    /// ` AND <column> NOT IN (<the domains seen>)`: rows of a domain not
    /// seen (none for every domain).
    pub fn push_outside_condition(&self, sql: &mut Sql, column: &str) {
        let Some(domains) = self.domains() else {
            sql.push(" AND 1 = 0");
            return;
        };
        if domains.is_empty() {
            return;
        }
        sql.push(" AND ").push(column).push(" NOT IN (");
        for (i, domain) in domains.into_iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(domain);
        }
        sql.push(")");
    }

    /// ` AND <the list column names a domain, and only domains, seen>`:
    /// failure reports name their domains in a list, as the reporter wrote
    /// them, and one that names another group's domain is that group's too.
    pub fn push_list_condition(&self, sql: &mut Sql, column: &str) {
        let Some(domains) = self.domains() else {
            return;
        };
        if domains.is_empty() {
            sql.push(" AND 1 = 0");
            return;
        }
        let listed = |sql: &mut Sql, negated: bool| {
            let not = if negated { "NOT " } else { "" };
            sql.push(&match sql.backend() {
                crate::store::Backend::Postgres => format!(
                    "EXISTS (SELECT 1 FROM unnest({column}) AS listed (domain) \
                     WHERE rtrim(lower(listed.domain), '.') {not}IN ("
                ),
                crate::store::Backend::Sqlite => format!(
                    "EXISTS (SELECT 1 FROM json_each({column}) AS listed \
                     WHERE rtrim(lower(listed.value), '.') {not}IN ("
                ),
            });
            for (i, domain) in domains.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind(domain.clone());
            }
            sql.push("))");
        };
        sql.push(" AND ");
        listed(sql, false);
        sql.push(" AND NOT ");
        listed(sql, true);
    }
}

/// Domain names compare lower case, without the root dot.
pub fn normalized(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(group_id: i64, role: GroupRole, domains: &[&str]) -> Membership {
        Membership {
            group_id,
            group: format!("g{group_id}"),
            role,
            domains: domains.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn a_member_sees_their_groups_domains_with_their_best_role() {
        let scope = Scope::groups(vec![
            member(2, GroupRole::Viewer, &["a.example", "b.example"]),
            member(3, GroupRole::Analyst, &["c.example"]),
        ]);
        assert!(scope.sees("A.example."));
        assert!(!scope.sees("d.example"));
        assert!(scope.may("c.example", GroupRole::Analyst));
        assert!(!scope.may("a.example", GroupRole::Analyst));
        assert!(!scope.may("c.example", GroupRole::Owner));
        assert_eq!(
            scope.domains().unwrap(),
            vec!["a.example", "b.example", "c.example"]
        );
        assert!(Scope::All.may("anything.example", GroupRole::Owner));
    }

    #[test]
    fn roles_order_and_parse() {
        assert!(GroupRole::Owner > GroupRole::Analyst);
        assert!(GroupRole::Analyst > GroupRole::Viewer);
        assert_eq!(GroupRole::parse(" Analyst"), Some(GroupRole::Analyst));
        assert_eq!(GroupRole::parse("admin"), None);
    }
}
