-- The database of unisender-local, version 4 (PRAGMA user_version = 4).
-- Applied once to an empty file by src/store/db.rs. Ids are global INTEGER PRIMARY KEYs, so an id
-- of one account is simply absent from another's rows. Times are Unix seconds, UTC.
-- Statuses, availabilities and membership states are small integers; src/model.rs maps them:
--   email status:  0 new, 1 invited, 2 active, 3 inactive, 4 unsubscribed, 5 blocked, 6 activation_requested
--   phone status:  0 new, 2 active, 3 inactive, 4 unsubscribed, 5 blocked
--   availability:  0 available, 1 unreachable, 2 temp_unreachable, 3 mailbox_full, 4 spam_rejected, 5 spam_folder
--   membership:    0 active, 1 unsubscribed, 2 excluded, 3 invited

-- One account per API key; every other table hangs off an account.
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    login         TEXT NOT NULL UNIQUE,       -- as getTotalContactsCount names it
    api_key       TEXT NOT NULL UNIQUE,       -- the secret every call carries
    contact_limit INTEGER                     -- the tariff's contact limit; NULL: none
);

-- Mailing lists.
CREATE TABLE lists (
    id                   INTEGER PRIMARY KEY,
    account_id           INTEGER NOT NULL REFERENCES accounts(id),
    title                TEXT NOT NULL,       -- unique within the account
    before_subscribe_url TEXT NOT NULL DEFAULT '',
    after_subscribe_url  TEXT NOT NULL DEFAULT '',
    UNIQUE (account_id, title)
);

-- User-defined contact fields.
CREATE TABLE fields (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts(id),
    name        TEXT NOT NULL,                -- unique within the account, case-insensitively
    type        TEXT NOT NULL,                -- string | text | number | date | bool
    public_name TEXT NOT NULL,
    is_visible  INTEGER NOT NULL DEFAULT 1,
    view_pos    INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX fields_by_name ON fields (account_id, name COLLATE NOCASE);

-- Account-wide tag names.
CREATE TABLE tags (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    name       TEXT NOT NULL,                 -- as first given
    name_key   TEXT NOT NULL                  -- the name lower-cased (Unicode, not just ASCII as
                                              -- NOCASE would): names are matched by it
);
CREATE UNIQUE INDEX tags_by_key ON tags (account_id, name_key);

-- Contacts (person_id = id) with their two channels inline: a NULL address means no channel.
-- A contact's memberships, tags and field values are packed into its last three columns
-- (src/store/packed.rs has the encodings): one row per contact instead of about ten B-tree
-- entries. Filters by list or tag walk the account's contacts in id order, which exports did
-- anyway.
CREATE TABLE contacts (
    id                 INTEGER PRIMARY KEY,
    account_id         INTEGER NOT NULL REFERENCES accounts(id),
    email              TEXT,                  -- lower-cased
    email_status       INTEGER,
    email_availability INTEGER,
    email_add_time     INTEGER,
    email_request_ip   TEXT,
    email_confirm_time INTEGER,
    email_confirm_ip   TEXT,
    phone              TEXT,                  -- '+' and digits
    phone_status       INTEGER,
    phone_availability INTEGER,
    phone_add_time     INTEGER,
    phone_request_ip   TEXT,
    memberships        BLOB,                  -- lists of both channels, with states and times
    tag_ids            BLOB,                  -- ids in tags
    field_values       BLOB                   -- values by ids in fields
);
-- The lookups of importContacts, and the uniqueness of an address within an account.
CREATE UNIQUE INDEX contacts_by_email ON contacts (account_id, email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX contacts_by_phone ON contacts (account_id, phone) WHERE phone IS NOT NULL;
-- An account's contacts are paged in id order by the rowid itself (starting from the block
-- contact_blocks finds), and counted by contact_blocks: no index by account is needed.

-- How many of an account's contacts have ids in each block of 1024 ids: exportContacts finds the
-- page at any offset by summing these (about a thousand rows for a million contacts) instead of
-- walking every contact before it. Inserts are counted by the writer, once per block per call
-- (store/contact_rows.rs, NewContacts: a trigger per row cost a tenth of import time); deletes
-- by the trigger below.
CREATE TABLE contact_blocks (
    account_id INTEGER NOT NULL,
    block      INTEGER NOT NULL,              -- contact id >> 10
    contacts   INTEGER NOT NULL,
    PRIMARY KEY (account_id, block)
) WITHOUT ROWID;
CREATE TRIGGER contact_uncounted AFTER DELETE ON contacts BEGIN
    UPDATE contact_blocks SET contacts = contacts - 1
    WHERE account_id = OLD.account_id AND block = OLD.id >> 10;
END;

-- How many of an account's contacts in each block of 1024 ids have a facet: are in a list (on
-- either channel, or on one), have a tag, or have an email or phone status (src/store/facets.rs
-- has the codes: id * 8 + kind). getContactCount by list sums these, and a filtered export finds
-- the block holding its offset with them. Kept by the writer from its row writes, summed per
-- command; a count may be left at 0, and rows of a deleted list or tag are removed with it.
CREATE TABLE block_counts (
    account_id INTEGER NOT NULL,
    facet      INTEGER NOT NULL,
    block      INTEGER NOT NULL,              -- contact id >> 10
    contacts   INTEGER NOT NULL,
    PRIMARY KEY (account_id, facet, block)
) WITHOUT ROWID;

-- Lists, tags and fields deleted whose ids contacts may still carry in their packed columns. The
-- catalog row goes at once (the API no longer sees it, and never shows such an id), and the
-- writer takes the id off the account's contacts a step at a time when idle, from after_id on.
CREATE TABLE catalog_deletions (
    kind       TEXT NOT NULL,                 -- list | tag | field
    id         INTEGER NOT NULL,
    account_id INTEGER NOT NULL,
    after_id   INTEGER NOT NULL DEFAULT 0,    -- contacts up to this id are done
    PRIMARY KEY (kind, id)
);

-- async/exportContacts tasks; their files live in the directory beside the database.
CREATE TABLE export_tasks (
    uuid        TEXT PRIMARY KEY,             -- the task_uuid the account sees
    account_id  INTEGER NOT NULL REFERENCES accounts(id),
    status      TEXT NOT NULL,                -- new | processing | completed | failed
    request     TEXT NOT NULL,                -- the export's filters and columns, as JSON
    notify_url  TEXT,
    base_url    TEXT NOT NULL,                -- scheme and host the download URL is built on
    file_token  TEXT,                         -- the unguessable name of the finished file
    created_at  INTEGER NOT NULL,
    error       TEXT                          -- why a failed task failed
);
CREATE INDEX export_tasks_by_age ON export_tasks (created_at);

-- Double opt-in confirmations subscribe asked for (the outbox of /_local/outbox): what the real
-- service would have emailed, and what confirming it (the link, /_local/confirm) changed.
CREATE TABLE confirmations (
    token        TEXT PRIMARY KEY,            -- the secret of the confirmation link
    account_id   INTEGER NOT NULL REFERENCES accounts(id),
    contact_id   INTEGER NOT NULL,
    email        TEXT NOT NULL,               -- the address the link went to
    list_ids     TEXT NOT NULL,               -- the lists the contact was invited to, comma-separated
    created_at   INTEGER NOT NULL,
    confirmed_at INTEGER,                     -- NULL while pending
    confirmed_ip TEXT
);
CREATE INDEX confirmations_by_account ON confirmations (account_id, email);
CREATE INDEX confirmations_by_email ON confirmations (email);

PRAGMA user_version = 4;
