//! importContacts (§5): the call read off the wire, planned, applied by the writer, answered.

use super::{Answer, Call};
use crate::error::{Error, Result};
use crate::import_plan::{Columns, Data, ImportFlags, ImportPlan, PARALLEL_THRESHOLD, plan_rows};
use crate::model::Timestamp;
use crate::store::apply_import::ImportOutcome;
use crate::store::db;
use crate::store::writer::Command;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};

/// importContacts calls between reading their rows and their answer.
static IMPORTS_IN_PROGRESS: AtomicUsize = AtomicUsize::new(0);

/// Counts a call in `IMPORTS_IN_PROGRESS` while it lives.
struct InProgress;

impl InProgress {
    /// Starts counting; answers whether no other import was in progress.
    fn start() -> (InProgress, bool) {
        let before = IMPORTS_IN_PROGRESS.fetch_add(1, Ordering::SeqCst);
        (InProgress, before == 0)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        IMPORTS_IN_PROGRESS.fetch_sub(1, Ordering::SeqCst);
    }
}

pub fn import_contacts(call: &Call) -> Result<Answer> {
    // Rows are checked on rayon only when this call is alone: then the other cores are idle and
    // it answers sooner. While other imports are in progress they, and the writer applying them,
    // already use the cores, and rayon's hand-offs would only add work (on two cores, four
    // clients ran at 0.84 × the writer's speed with rayon on every call).
    let (_in_progress, alone) = InProgress::start();
    let plan = plan(call, alone)?;
    let outcome = call
        .store
        .writer()
        .submit(|reply| Command::Import(plan.clone(), reply))?;
    Ok(answer(outcome))
}

/// The call read and checked, ready for the writer.
fn plan(call: &Call, alone: bool) -> Result<std::sync::Arc<ImportPlan>> {
    let params = call.params;
    let flags = ImportFlags::parse(params).map_err(Error::invalid_arg)?;
    let field_names = params
        .get("field_names")
        .ok_or_else(|| Error::invalid_arg("field_names is missing"))?;
    let data = Data::of(params).ok_or_else(|| Error::invalid_arg("data is missing"))?;
    let user_fields = call
        .store
        .read(|conn| db::field_names(conn, call.account.id))?;
    let columns = Columns::parse(field_names, &user_fields).map_err(Error::invalid_arg)?;
    let rows = data.split(&columns).map_err(Error::invalid_arg)?;
    let now = Timestamp::now();
    Ok(std::sync::Arc::new(ImportPlan {
        account_id: call.account.id,
        flags,
        now,
        field_ids: columns.field_ids(),
        rows: plan_rows(
            &columns,
            &rows,
            alone && rows.len() >= PARALLEL_THRESHOLD,
            now,
        ),
    }))
}

/// importContacts for a caller that checks several calls at once but must have them applied
/// in its order (the command line's `import`): the call is checked here, then handed to
/// `queue_in_turn`, which queues it for the writer once the calls before it are queued.
pub fn import_in_turn(
    app: &crate::app::App,
    account: crate::store::db::Account,
    params: &crate::params::Params,
    queue_in_turn: impl FnOnce(Command) -> Result<()>,
) -> Result<Answer> {
    let call = Call {
        app,
        store: &app.store,
        account,
        params,
        base_url: &app.public_url,
    };
    let (_in_progress, alone) = InProgress::start();
    let plan = plan(&call, alone)?;
    let (reply, answers) = crossbeam_channel::bounded(1);
    queue_in_turn(Command::Import(plan.clone(), reply))?;
    let outcome = answers
        .recv()
        .unwrap_or_else(|_| Err(Error::Internal("the writer dropped a command".into())))?;
    Ok(answer(outcome))
}

fn answer(outcome: ImportOutcome) -> Answer {
    let log: Vec<_> = outcome
        .log
        .iter()
        .map(|entry| json!({"index": entry.index, "code": entry.note.code, "message": entry.note.message}))
        .collect();
    let mut answer = Answer::new(json!({
        "total": outcome.total,
        "inserted": outcome.inserted,
        "updated": outcome.updated,
        "deleted": outcome.deleted,
        "new_emails": outcome.new_emails,
        "invalid": outcome.invalid,
        "log": log,
    }));
    if outcome.overlimit {
        answer
            .warnings
            .push("Addresses overlimit for current period".into());
    }
    answer
}
