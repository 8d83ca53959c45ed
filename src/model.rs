//! Validated values of the contact model (spec §4).
//!
//! Every type here is built only through a constructor that checks its input, so code holding an
//! `Email` or a `Phone` never re-checks it. Nothing here does I/O or knows HTTP, which keeps it safe
//! to call from rayon workers.

use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// A normalised email address: trimmed, lower-cased, checked against §4's rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Option<Email> {
        let trimmed = trim(raw);
        if trimmed.is_ascii() {
            return Email::parse_ascii(trimmed);
        }
        Email::parse_unicode(trimmed)
    }

    /// `parse_unicode` for an ASCII address, on bytes: an ASCII character is one byte, the
    /// whitespace and control characters among them are the bytes up to the space and DEL, and
    /// none is an invisible format character. Nearly every address is ASCII, and the general
    /// way cost a tenth of checking an import row.
    fn parse_ascii(trimmed: &str) -> Option<Email> {
        if trimmed.len() > 254 {
            return None;
        }
        let address = trimmed.to_ascii_lowercase();
        let (local, domain) = address.split_once('@')?;
        if domain.contains('@') {
            return None;
        }
        if !(1..=64).contains(&local.len()) || local.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return None;
        }
        let mut labels = 0;
        for label in domain.as_bytes().split(|&b| b == b'.') {
            let valid = matches!(label, [first, .., last] | [first @ last]
                    if *first != b'-' && *last != b'-')
                && label
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-');
            if !valid {
                return None;
            }
            labels += 1;
        }
        if labels < 2 {
            return None;
        }
        Some(Email(address))
    }

    fn parse_unicode(trimmed: &str) -> Option<Email> {
        let address = trimmed.to_lowercase();
        if address.chars().count() > 254 {
            return None;
        }
        let (local, domain) = address.split_once('@')?;
        if domain.contains('@') {
            return None;
        }
        let local_len = local.chars().count();
        if !(1..=64).contains(&local_len)
            || local
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || is_invisible_format(c))
        {
            return None;
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 || !labels.iter().all(|label| valid_domain_label(label)) {
            return None;
        }
        Some(Email(address))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the local part is a role name (`info@`, `admin@` ...), which the real service
    /// flags as harmful to deliverability.
    pub fn is_role_address(&self) -> bool {
        const ROLES: [&str; 10] = [
            "info",
            "sales",
            "support",
            "admin",
            "no-reply",
            "noreply",
            "all",
            "postmaster",
            "abuse",
            "webmaster",
        ];
        let local = self.0.split('@').next().unwrap_or_default();
        ROLES.contains(&local)
    }
}

/// Unicode format characters (category Cf): bidirectional overrides such as U+202E, zero-width
/// spaces and joiners, the soft hyphen, tags. Invisible on screen, they make an address read
/// as another one.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{600}'..='\u{605}'
            | '\u{61C}'
            | '\u{6DD}'
            | '\u{70F}'
            | '\u{890}'..='\u{891}'
            | '\u{8E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

fn valid_domain_label(label: &str) -> bool {
    !label.is_empty()
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(|c| c.is_alphanumeric() || c == '-')
}

/// A phone number in international form, stored as `+` and 7 to 15 digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Option<Phone> {
        let trimmed = trim(raw);
        let without_plus = trimmed.strip_prefix('+').unwrap_or(trimmed);
        let mut phone = String::with_capacity(16);
        phone.push('+');
        for c in without_plus.chars() {
            match c {
                '0'..='9' => phone.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return None,
            }
        }
        // '+' and 7 to 15 digits.
        if !(8..=16).contains(&phone.len()) {
            return None;
        }
        Some(Phone(phone))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Declares a closed vocabulary: its wire names and the small integer stored for each.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal, $wire:literal;)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn from_wire(text: &str) -> Option<Self> {
                match text { $($wire => Some(Self::$variant),)+ _ => None }
            }
            pub fn wire(self) -> &'static str {
                match self { $(Self::$variant => $wire),+ }
            }
            /// The integer stored in the database (see schema.sql).
            pub fn code(self) -> i64 {
                match self { $(Self::$variant => $code),+ }
            }
            pub fn from_code(code: i64) -> Option<Self> {
                match code { $($code => Some(Self::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.wire())
            }
        }
    };
}

vocabulary!(
    /// The status of an email address.
    EmailStatus {
        New = 0, "new";
        Invited = 1, "invited";
        Active = 2, "active";
        Inactive = 3, "inactive";
        Unsubscribed = 4, "unsubscribed";
        Blocked = 5, "blocked";
        ActivationRequested = 6, "activation_requested";
    }
);

vocabulary!(
    /// The status of a phone number.
    PhoneStatus {
        New = 0, "new";
        Active = 2, "active";
        Inactive = 3, "inactive";
        Unsubscribed = 4, "unsubscribed";
        Blocked = 5, "blocked";
    }
);

vocabulary!(
    /// Whether mail or messages reach the address.
    Availability {
        Available = 0, "available";
        Unreachable = 1, "unreachable";
        TempUnreachable = 2, "temp_unreachable";
        MailboxFull = 3, "mailbox_full";
        SpamRejected = 4, "spam_rejected";
        SpamFolder = 5, "spam_folder";
    }
);

vocabulary!(
    /// The state of one channel's membership in one list.
    MembershipState {
        Active = 0, "active";
        Unsubscribed = 1, "unsubscribed";
        Excluded = 2, "excluded";
        Invited = 3, "invited";
    }
);

/// A channel's status, whichever the channel: import and the status rule treat both alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusCode(pub i64);

impl StatusCode {
    pub const ACTIVE: StatusCode = StatusCode(2);
    pub const INACTIVE: StatusCode = StatusCode(3);

    /// The status rule of §5.4: a given status replaces only `active` or `inactive`.
    pub fn may_be_replaced(self) -> bool {
        self == Self::ACTIVE || self == Self::INACTIVE
    }
}

impl EmailStatus {
    /// The statuses importContacts may set.
    pub fn parse_importable(text: &str) -> Option<EmailStatus> {
        match EmailStatus::from_wire(text)? {
            status @ (EmailStatus::New
            | EmailStatus::Active
            | EmailStatus::Inactive
            | EmailStatus::Unsubscribed) => Some(status),
            _ => None,
        }
    }
}

impl PhoneStatus {
    /// The statuses importContacts may set (the same four as for email).
    pub fn parse_importable(text: &str) -> Option<PhoneStatus> {
        match PhoneStatus::from_wire(text)? {
            PhoneStatus::Blocked => None,
            status => Some(status),
        }
    }
}

/// A moment, in whole seconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(OffsetDateTime::now_utc().unix_timestamp())
    }

    /// The first and last moments written as `YYYY-MM-DD hh:mm:ss`: years 1 to 9999, UTC.
    const EARLIEST: i64 = -62_135_596_800;
    const LATEST: i64 = 253_402_300_799;

    /// Reads `YYYY-MM-DD hh:mm:ss`, `YYYY-MM-DD hh:mm`, `YYYY-MM-DD` or RFC 3339 (§4). A moment
    /// outside years 1 to 9999 once in UTC (`9999-12-31T23:59:59-23:59`) is refused: it could
    /// not be written back.
    pub fn parse(raw: &str) -> Option<Timestamp> {
        Self::parse_any(raw).filter(|moment| (Self::EARLIEST..=Self::LATEST).contains(&moment.0))
    }

    fn parse_any(raw: &str) -> Option<Timestamp> {
        let text = trim(raw);
        if let Some(moment) = Self::parse_seconds_form(text) {
            return Some(moment);
        }
        let seconds = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        let minutes = format_description!("[year]-[month]-[day] [hour]:[minute]");
        let day = format_description!("[year]-[month]-[day]");
        if let Ok(moment) = PrimitiveDateTime::parse(text, seconds)
            .or_else(|_| PrimitiveDateTime::parse(text, minutes))
        {
            return Some(Timestamp(moment.assume_utc().unix_timestamp()));
        }
        if let Ok(date) = time::Date::parse(text, day) {
            return Some(Timestamp(date.midnight().assume_utc().unix_timestamp()));
        }
        OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .map(|moment| Timestamp(moment.unix_timestamp()))
    }

    /// `YYYY-MM-DD hh:mm:ss`, the form nearly every time arrives in, read without the general
    /// parser (a tenth of the cost; validating import rows reads two times a row).
    fn parse_seconds_form(text: &str) -> Option<Timestamp> {
        let b = text.as_bytes();
        let shape = b.len() == 19
            && b.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                10 => *c == b' ',
                13 | 16 => *c == b':',
                _ => c.is_ascii_digit(),
            });
        if !shape {
            return None;
        }
        let number = |from: usize, to: usize| {
            b[from..to]
                .iter()
                .fold(0u32, |n, digit| n * 10 + u32::from(digit - b'0'))
        };
        let month = time::Month::try_from(u8::try_from(number(5, 7)).ok()?).ok()?;
        let date =
            time::Date::from_calendar_date(number(0, 4) as i32, month, number(8, 10) as u8).ok()?;
        let clock = time::Time::from_hms(
            number(11, 13) as u8,
            number(14, 16) as u8,
            number(17, 19) as u8,
        )
        .ok()?;
        Some(Timestamp(
            PrimitiveDateTime::new(date, clock)
                .assume_utc()
                .unix_timestamp(),
        ))
    }

    /// Now as `YYYY-MM-DD hh:mm:ss.mmm` UTC, for logs and the journal.
    pub fn now_wire_ms() -> String {
        Timestamp::wire_ms(std::time::SystemTime::now())
    }

    /// A moment as `YYYY-MM-DD hh:mm:ss.mmm` UTC, for logs and the journal.
    pub fn wire_ms(moment: std::time::SystemTime) -> String {
        let format = format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
        );
        OffsetDateTime::from(moment)
            .format(format)
            .unwrap_or_default()
    }

    /// Writes `YYYY-MM-DD hh:mm:ss` in UTC.
    pub fn wire(self) -> String {
        let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|moment| moment.format(format).ok())
            .unwrap_or_default()
    }
}

/// Splits a comma-separated cell into trimmed, non-empty items.
pub fn comma_items(cell: &str) -> impl Iterator<Item = &str> {
    cell.split(',').map(trim).filter(|item| !item.is_empty())
}

/// `str::trim`, at once when both ends are ASCII and not whitespace, as nearly every cell's are
/// (trimming each cell and item the general way, which decodes characters from both ends, was
/// a twentieth of checking an import row).
pub fn trim(text: &str) -> &str {
    let kept =
        |byte: Option<&u8>| byte.is_some_and(|&b| b.is_ascii() && !(b as char).is_whitespace());
    if kept(text.as_bytes().first()) && kept(text.as_bytes().last()) {
        return text;
    }
    text.trim()
}

/// Reads a flag as §1.2 spells it: `1`/`0`, `true`/`false` in any case, or empty (= false).
pub fn parse_flag(raw: &str) -> Option<bool> {
    match raw.trim() {
        "" | "0" => Some(false),
        "1" => Some(true),
        other if other.eq_ignore_ascii_case("true") => Some(true),
        other if other.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Trims, drops empty names and merges names equal but for case, keeping the first spelling.
/// Stops at the first name past `MAX_TAGS_PER_CONTACT`: that one is enough to refuse the cell,
/// and a 64 KiB cell of tiny names then costs what eleven names cost, not a comparison of
/// every name with every other.
pub fn normalise_tags(cell: &str) -> Vec<String> {
    // At most eleven names are kept, so a name is compared with each of them: cheaper than
    // hashing lower-cased copies (which was a tenth of checking an import row).
    let mut names: Vec<&str> = Vec::new();
    for name in comma_items(cell) {
        if !names.iter().any(|kept| same_ignoring_case(kept, name)) {
            names.push(name);
            if names.len() > MAX_TAGS_PER_CONTACT {
                break;
            }
        }
    }
    names.into_iter().map(str::to_string).collect()
}

/// A name lower-cased character by character (Unicode): how tag names are matched, in a call
/// (`same_ignoring_case`) and in the database (`tags.name_key`) alike.
pub fn case_key(name: &str) -> String {
    if name.is_ascii() {
        return name.to_ascii_lowercase();
    }
    name.chars().flat_map(char::to_lowercase).collect()
}

/// Whether two names are equal but for case (Unicode lower-casing), without allocating.
pub fn same_ignoring_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// The most tags one contact may carry (§8).
pub const MAX_TAGS_PER_CONTACT: usize = 10;

/// The most bytes one value may have, in every method (§8, "one cell"): a longer one could be
/// stored but not exported and imported back.
pub const MAX_CELL_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The ASCII way gives what the general way gives, for every ASCII input: addresses,
        /// near-addresses and any bytes at all.
        #[test]
        fn ascii_addresses_parse_as_the_general_way_parses_them(
            input in prop_oneof![
                "[ \t\x0b]?[A-Za-z0-9._%+\x00-\x1f\x7f -]{0,70}@[A-Za-z0-9@.-]{0,20}[ \r\n]?",
                r"[ \t\x0b]?[A-Za-z0-9._%+ \t-]{1,10}@[a-z0-9-]{1,6}\.[a-zA-Z0-9-]{1,6}(\.[a-z]{1,3})?[ \r\n]?",
                r"[a-z\x00-\x1f\x7f]{1,8}@[a-z]{1,4}\.[a-z]{2,3}",
                r"[a-z]{60,70}@[a-z]{1,4}\.[a-z]{2,3}",
                "[\x00-\x7f]{0,40}",
                r"[a-z]{1,3}(@[a-z]{0,2}(\.[a-z-]{0,2}){0,3})?",
            ],
        ) {
            prop_assert!(input.is_ascii());
            prop_assert_eq!(Email::parse(&input), Email::parse_unicode(input.trim()));
        }
    }

    fn check_email(input: &str, expected: Option<&str>) {
        assert_eq!(
            Email::parse(input).as_ref().map(Email::as_str),
            expected,
            "{input:?}"
        );
    }

    #[test]
    fn emails() {
        check_email(" A@Example.COM ", Some("a@example.com"));
        check_email(
            "user.name+tag@sub.example.org",
            Some("user.name+tag@sub.example.org"),
        );
        check_email("иван@почта.рф", Some("иван@почта.рф"));
        check_email("a@b-c.de", Some("a@b-c.de"));
        check_email("plain", None);
        check_email("a@b", None);
        check_email("a@@b.c", None);
        check_email("a@b@c.d", None);
        check_email("@b.c", None);
        check_email("a b@c.d", None);
        check_email("a@-b.c", None);
        check_email("a@b-.c", None);
        check_email("a@b..c", None);
        check_email("a@b_c.d", None);
        check_email(&format!("{}@b.c", "x".repeat(65)), None);
        check_email(
            &format!("{}@b.c", "x".repeat(64)),
            Some(&format!("{}@b.c", "x".repeat(64))),
        );
        check_email(&format!("a@{}.com", "b".repeat(250)), None);
        check_email("a\u{1}@b.c", None);
        check_email("gnp\u{202E}moc.evil@b.c", None);
        check_email("a\u{200B}b@b.c", None);
    }

    fn check_phone(input: &str, expected: Option<&str>) {
        assert_eq!(
            Phone::parse(input).as_ref().map(Phone::as_str),
            expected,
            "{input:?}"
        );
    }

    #[test]
    fn phones() {
        check_phone("+7 (916) 123-45.67", Some("+79161234567"));
        check_phone("79161234567", Some("+79161234567"));
        check_phone("1234567", Some("+1234567"));
        check_phone("123456", None);
        check_phone("1234567890123456", None);
        check_phone("+1 555 CALL", None);
        check_phone("++12345678", None);
        check_phone("", None);
    }

    fn check_time(input: &str, expected: Option<&str>) {
        assert_eq!(
            Timestamp::parse(input).map(Timestamp::wire).as_deref(),
            expected,
            "{input:?}"
        );
    }

    #[test]
    fn times() {
        check_time("2023-11-14 22:13:20", Some("2023-11-14 22:13:20"));
        check_time("2023-11-14 22:13", Some("2023-11-14 22:13:00"));
        check_time("2023-11-14", Some("2023-11-14 00:00:00"));
        check_time("2023-11-14T22:13:20Z", Some("2023-11-14 22:13:20"));
        check_time("2023-11-14T22:13:20+03:00", Some("2023-11-14 19:13:20"));
        check_time("2023-02-30", None);
        check_time("2023-02-30 00:00:00", None);
        check_time("2023-12-31 24:00:00", None);
        check_time("2023-13-01 00:00:00", None);
        check_time("2024-02-29 23:59:59", Some("2024-02-29 23:59:59"));
        check_time(" 1999-01-01 00:00:00 ", Some("1999-01-01 00:00:00"));
        check_time("yesterday", None);
        check_time("9999-12-31T23:59:59-23:59", None);
        check_time("9999-12-31 23:59:59", Some("9999-12-31 23:59:59"));
        check_time("0001-01-01T00:00:00+01:00", None);
        check_time("0001-01-01 00:00:00", Some("0001-01-01 00:00:00"));
        check_time("", None);
    }

    #[test]
    fn flags_and_tags() {
        assert_eq!(parse_flag("True"), Some(true));
        assert_eq!(parse_flag(""), Some(false));
        assert_eq!(parse_flag("yes"), None);
        assert_eq!(normalise_tags(" a, ,B,b ,c"), vec!["a", "B", "c"]);
        let many: Vec<String> = (0..20_000).map(|n| format!("t{n}")).collect();
        assert_eq!(normalise_tags(&many.join(",")), many[..11].to_vec());
        assert_eq!(normalise_tags(&"x,X,".repeat(10_000)), vec!["x"]);
        assert!(same_ignoring_case("Тег", "тЕГ"));
        assert!(!same_ignoring_case("tag", "tags"));
        assert!(Email::parse("NoReply@x.io").unwrap().is_role_address());
        assert!(!Email::parse("john@x.io").unwrap().is_role_address());
    }

    #[test]
    fn vocabularies_round_trip() {
        for status in [
            "new",
            "invited",
            "active",
            "inactive",
            "unsubscribed",
            "blocked",
        ] {
            let parsed = EmailStatus::from_wire(status).unwrap();
            assert_eq!(EmailStatus::from_code(parsed.code()), Some(parsed));
            assert_eq!(parsed.wire(), status);
        }
        assert_eq!(EmailStatus::parse_importable("invited"), None);
        assert_eq!(PhoneStatus::parse_importable("blocked"), None);
        assert_eq!(PhoneStatus::parse_importable("new"), Some(PhoneStatus::New));
    }

    proptest! {
        /// The quick way trims exactly as `str::trim`, whatever the characters at either end.
        #[test]
        fn trim_is_str_trim(text in r"[ \t\x0b\x0c\r\na\u{a0}\u{85}\u{2003}é,-]{0,6}") {
            prop_assert_eq!(trim(&text), text.trim());
        }
    }
}
