//! What an exportContacts call asks for (spec §6.1): its columns and filters, checked. Pure; the
//! store runs it (`store::export_reader`), and async tasks keep it as JSON.

use crate::model::{EmailStatus, PhoneStatus};
use serde::{Deserialize, Serialize};

/// Declares the exportable system columns with their wire names: those of the default
/// `field_names`, in its order, then those exported only when asked for.
macro_rules! system_columns {
    (
        default { $($variant:ident = $wire:literal,)+ }
        on_request { $($extra:ident = $extra_wire:literal,)+ }
    ) => {
        /// An exportable system column.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum SystemColumn { $($variant,)+ $($extra,)+ }

        impl SystemColumn {
            /// The system columns of the default `field_names`, in order.
            pub const ALL: &'static [SystemColumn] = &[$(SystemColumn::$variant),+];

            pub fn wire(self) -> &'static str {
                match self {
                    $(SystemColumn::$variant => $wire,)+
                    $(SystemColumn::$extra => $extra_wire,)+
                }
            }

            pub fn from_wire(name: &str) -> Option<SystemColumn> {
                match name {
                    $($wire => Some(SystemColumn::$variant),)+
                    $($extra_wire => Some(SystemColumn::$extra),)+
                    _ => None,
                }
            }
        }
    };
}

system_columns!(
    default {
        Id = "id",
        Email = "email",
        EmailStatus = "email_status",
        EmailAvailability = "email_availability",
        EmailAddTime = "email_add_time",
        EmailRequestIp = "email_request_ip",
        EmailConfirmTime = "email_confirm_time",
        EmailConfirmIp = "email_confirm_ip",
        EmailListIds = "email_list_ids",
        EmailSubscribeTimes = "email_subscribe_times",
        EmailUnsubscribedListIds = "email_unsubscribed_list_ids",
        EmailExcludedListIds = "email_excluded_list_ids",
        Phone = "phone",
        PhoneStatus = "phone_status",
        PhoneAvailability = "phone_availability",
        PhoneAddTime = "phone_add_time",
        PhoneRequestIp = "phone_request_ip",
        PhoneListIds = "phone_list_ids",
        PhoneSubscribeTimes = "phone_subscribe_times",
        PhoneUnsubscribedListIds = "phone_unsubscribed_list_ids",
        PhoneExcludedListIds = "phone_excluded_list_ids",
        Tags = "tags",
    }
    // The delivery history the real service lists among its system fields (§6.1): always
    // empty here, since nothing is ever sent, and no importContacts column.
    on_request {
        EmailLastDeliveredAt = "email_last_delivered_at",
        EmailLastReadAt = "email_last_read_at",
        EmailLastClickedAt = "email_last_clicked_at",
        PhoneLastDeliveredAt = "phone_last_delivered_at",
    }
);

impl SystemColumn {
    /// Whether the column needs the contact's memberships.
    pub fn needs_memberships(self) -> bool {
        use SystemColumn::*;
        matches!(
            self,
            EmailListIds
                | EmailSubscribeTimes
                | EmailUnsubscribedListIds
                | EmailExcludedListIds
                | PhoneListIds
                | PhoneSubscribeTimes
                | PhoneUnsubscribedListIds
                | PhoneExcludedListIds
        )
    }
}

/// One column of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExportColumn {
    System(SystemColumn),
    /// A user field: its id, and its name as the header shows it.
    Field {
        id: i64,
        name: String,
    },
}

impl ExportColumn {
    pub fn header(&self) -> &str {
        match self {
            ExportColumn::System(column) => column.wire(),
            ExportColumn::Field { name, .. } => name,
        }
    }
}

/// The filters of §6.1; each narrows the contacts, all together must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExportFilters {
    pub list_id: Option<i64>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub tag: Option<String>,
    /// Stored status codes.
    pub email_status: Option<i64>,
    pub phone_status: Option<i64>,
}

impl ExportFilters {
    pub fn is_empty(&self) -> bool {
        *self == ExportFilters::default()
    }
}

/// A whole export request, for a page or for an async task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportQuery {
    pub account_id: i64,
    pub filters: ExportFilters,
    pub columns: Vec<ExportColumn>,
}

impl ExportQuery {
    pub fn headers(&self) -> Vec<String> {
        self.columns
            .iter()
            .map(|c| c.header().to_string())
            .collect()
    }

    pub fn needs_memberships(&self) -> bool {
        self.columns
            .iter()
            .any(|c| matches!(c, ExportColumn::System(s) if s.needs_memberships()))
    }

    pub fn needs_tags(&self) -> bool {
        self.columns
            .contains(&ExportColumn::System(SystemColumn::Tags))
    }

    pub fn needs_fields(&self) -> bool {
        self.columns
            .iter()
            .any(|c| matches!(c, ExportColumn::Field { .. }))
    }
}

/// A user field as export needs it.
#[derive(Clone, Debug)]
pub struct ExportField {
    pub id: i64,
    pub name: String,
}

/// Reads the requested column names (matched ignoring case); no names at all is the default set:
/// every system column, then every user field in id order.
pub fn parse_columns(
    names: &[String],
    fields: &[ExportField],
) -> Result<Vec<ExportColumn>, String> {
    if names.is_empty() {
        let system = SystemColumn::ALL.iter().map(|c| ExportColumn::System(*c));
        let user = fields.iter().map(|f| ExportColumn::Field {
            id: f.id,
            name: f.name.clone(),
        });
        return Ok(system.chain(user).collect());
    }
    let mut columns: Vec<ExportColumn> = Vec::with_capacity(names.len());
    for name in names {
        let lower = name.trim().to_lowercase();
        let column = match SystemColumn::from_wire(&lower) {
            Some(system) => ExportColumn::System(system),
            None => match fields.iter().find(|f| f.name.to_lowercase() == lower) {
                Some(field) => ExportColumn::Field {
                    id: field.id,
                    name: field.name.clone(),
                },
                None => {
                    return Err(format!(
                        "field_names: \"{}\" is neither a system column nor a user field",
                        name.chars().take(100).collect::<String>()
                    ));
                }
            },
        };
        if columns.contains(&column) {
            return Err(format!("field_names: column \"{name}\" appears twice"));
        }
        columns.push(column);
    }
    Ok(columns)
}

/// Reads a status filter against its channel's vocabulary.
pub fn parse_status(name: &str, value: &str, email: bool) -> Result<i64, String> {
    let code = if email {
        EmailStatus::from_wire(value).map(EmailStatus::code)
    } else {
        PhoneStatus::from_wire(value).map(PhoneStatus::code)
    };
    code.ok_or_else(|| format!("{name}: \"{value}\" is not a status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn columns() {
        let fields = [ExportField {
            id: 3,
            name: "City".into(),
        }];
        let default = parse_columns(&[], &fields).unwrap();
        assert_eq!(default.len(), SystemColumn::ALL.len() + 1);
        assert_eq!(default[0], ExportColumn::System(SystemColumn::Id));
        assert_eq!(default.last().unwrap().header(), "City");
        let chosen = parse_columns(&names(&["EMAIL", "city", "tags"]), &fields).unwrap();
        assert_eq!(
            chosen.iter().map(ExportColumn::header).collect::<Vec<_>>(),
            vec!["email", "City", "tags"]
        );
        assert!(parse_columns(&names(&["email", "nope"]), &fields).is_err());
        assert!(parse_columns(&names(&["email", "Email"]), &fields).is_err());
        assert_eq!(parse_status("s", "invited", true), Ok(1));
        assert!(parse_status("s", "invited", false).is_err());
    }
}
