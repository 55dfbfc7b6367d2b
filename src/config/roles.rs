//! Roles and their settings: the `roles` list of a node or pattern, and its
//! role sections overlaid on `[defaults]`, overlaid on the built-in values.

use std::collections::BTreeSet;

use toml::Spanned;

use super::balancer_settings::balancer;
use super::diagnostic::{Report, Span};
use super::model::*;
use super::raw::*;
use super::suggest::closest;
use super::values;
use super::web_settings::web;

/// Which kind of table the role sections sit in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Defaults,
    Node,
    Pattern,
}

impl Owner {
    fn table(self) -> &'static str {
        match self {
            Owner::Defaults => "[defaults]",
            Owner::Node => "[[node]]",
            Owner::Pattern => "[[pattern]]",
        }
    }
}

/// The per-role settings a node or pattern starts from before its own
/// sections are applied: the built-in values overlaid with `[defaults]`.
pub struct RoleDefaults {
    pub balancer: BalancerSettings,
    pub web: WebSettings,
    pub db: DbSettings,
    pub storage: StorageSettings,
}

impl RoleDefaults {
    /// The built-in values overlaid with `[defaults]`' role sections.
    pub fn new(sections: &RawSections, report: &mut Report<'_>) -> RoleDefaults {
        let builtin = RoleDefaults {
            balancer: BalancerSettings::default(),
            web: WebSettings::default(),
            db: DbSettings {
                initial_primary: false,
            },
            storage: StorageSettings {
                brick: "/srv/piha/brick".into(),
            },
        };
        let s = sections;
        RoleDefaults {
            balancer: balancer(&builtin.balancer, s.balancer.as_ref(), report),
            web: web(&builtin.web, s.web.as_ref(), report),
            db: db(&builtin.db, s.db.as_ref(), Owner::Defaults, report),
            storage: storage(&builtin.storage, s.storage.as_ref(), report),
        }
    }
}

/// The `roles` list: known names, each once. Missing is an error (an empty
/// list is how "no roles" is written), unless already reported.
pub fn required_roles(
    raw: &Option<Spanned<Vec<Spanned<String>>>>,
    reported: &Reported,
    table_span: Span,
    who: &str,
    report: &mut Report<'_>,
) -> BTreeSet<Role> {
    let Some(list) = raw else {
        if reported.contains("roles") {
            return BTreeSet::new();
        }
        report
            .error(
                table_span,
                format!("{who} is missing the required key `roles`"),
            )
            .help(
                "list its roles, like roles = [\"web\", \"storage\"] (an empty list [] means none)",
            );
        return BTreeSet::new();
    };
    let mut roles = BTreeSet::new();
    for name in list.get_ref() {
        let Some(role) = Role::from_name(name.get_ref()) else {
            let valid: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
            let mut message = format!(
                "unknown role \"{}\"; valid roles are {}",
                name.get_ref(),
                valid.join(", ")
            );
            if let Some(s) = closest(name.get_ref(), &valid) {
                message.push_str(&format!(" (did you mean \"{s}\"?)"));
            }
            report.error(name.span(), message);
            continue;
        };
        if !roles.insert(role) {
            report.error(name.span(), format!("role \"{role}\" is listed twice"));
        }
    }
    roles
}

/// The settings of each role `roles` holds: `[defaults]` overlaid with the
/// entry's own section. A section for a role the entry lacks is an error, not
/// silently ignored: it usually means the role was forgotten in `roles`.
pub fn role_settings(
    roles: &BTreeSet<Role>,
    sections: &RawSections,
    defaults: &RoleDefaults,
    who: &str,
    owner: Owner,
    report: &mut Report<'_>,
) -> RoleSettings {
    let present = [
        (
            Role::Balancer,
            sections.balancer.as_ref().map(|s| &s.key_span),
        ),
        (Role::Web, sections.web.as_ref().map(|s| &s.key_span)),
        (Role::Db, sections.db.as_ref().map(|s| &s.key_span)),
        (
            Role::Storage,
            sections.storage.as_ref().map(|s| &s.key_span),
        ),
    ];
    for (role, span) in present {
        if let Some(span) = span.filter(|_| !roles.contains(&role)) {
            report
                .error(
                    span.clone(),
                    format!("{who} has a `{role}` section but not the \"{role}\" role"),
                )
                .help(format!(
                    "add \"{role}\" to its roles, or delete the `{role}` section"
                ));
        }
    }
    let has = |role| roles.contains(&role);
    RoleSettings {
        balancer: has(Role::Balancer)
            .then(|| balancer(&defaults.balancer, sections.balancer.as_ref(), report)),
        web: has(Role::Web).then(|| web(&defaults.web, sections.web.as_ref(), report)),
        db: has(Role::Db).then(|| db(&defaults.db, sections.db.as_ref(), owner, report)),
        storage: has(Role::Storage)
            .then(|| storage(&defaults.storage, sections.storage.as_ref(), report)),
    }
}

/// Only a `[[node]]` may claim to be the first primary, since a pattern or
/// `[defaults]` can apply to many hosts.
fn db(
    base: &DbSettings,
    section: Option<&Section<RawDb>>,
    owner: Owner,
    report: &mut Report<'_>,
) -> DbSettings {
    let flag = section.and_then(|s| s.fields.initial_primary.as_ref());
    let initial_primary = match flag {
        Some(p) if *p.get_ref() && owner != Owner::Node => {
            report
                .error(
                    p.span(),
                    format!(
                        "`initial_primary = true` is not allowed in {}",
                        owner.table()
                    ),
                )
                .help("exactly one db node starts as primary: set it on that one [[node]]");
            false
        }
        Some(p) => *p.get_ref(),
        None => base.initial_primary,
    };
    DbSettings { initial_primary }
}

fn storage(
    base: &StorageSettings,
    section: Option<&Section<RawStorage>>,
    report: &mut Report<'_>,
) -> StorageSettings {
    let brick = section.and_then(|s| s.fields.brick.as_ref()).and_then(|b| {
        values::absolute_dir(b.get_ref())
            .map_err(|why| {
                report.error(b.span(), format!("invalid brick: {why}"));
            })
            .ok()
    });
    StorageSettings {
        brick: brick.unwrap_or_else(|| base.brick.clone()),
    }
}

/// Where a role was written in an entry's `roles` list.
pub fn role_span(raw: &Option<Spanned<Vec<Spanned<String>>>>, role: Role) -> Option<Span> {
    raw.as_ref()?
        .get_ref()
        .iter()
        .find(|r| r.get_ref() == role.name())
        .map(Spanned::span)
}
