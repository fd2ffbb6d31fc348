//! What a ticket step does to its line's `started_at` / `done_at` columns,
//! decided once for both backends: the prep-time estimates and a board's
//! "recently done" list read those columns, so SQLite and PostgreSQL must
//! write them alike, undos included.

use domain::TicketStatus;

/// What happens to one line time column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineTime {
    /// Set to the action's time.
    Stamp,
    /// Set to NULL (an undo took the step back).
    Clear,
    /// Left as it is.
    Keep,
}

/// `(started_at, done_at)` for a line whose ticket becomes `ticket`;
/// `reverts` for an undo. A forward start stamps `started_at`; a finish
/// stamps `done_at`; undoing a finish clears `done_at` but keeps when the
/// line was started; undoing a start clears both.
pub(crate) fn line_times(ticket: TicketStatus, reverts: bool) -> (LineTime, LineTime) {
    let done = if ticket == TicketStatus::Done {
        LineTime::Stamp
    } else {
        LineTime::Clear
    };
    let started = match (ticket, reverts) {
        (TicketStatus::Started, false) => LineTime::Stamp,
        (TicketStatus::Queued, _) => LineTime::Clear,
        _ => LineTime::Keep,
    };
    (started, done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_clears_only_the_step_it_takes_back() {
        use LineTime::*;
        assert_eq!(line_times(TicketStatus::Started, false), (Stamp, Clear));
        assert_eq!(line_times(TicketStatus::Done, false), (Keep, Stamp));
        assert_eq!(line_times(TicketStatus::Started, true), (Keep, Clear));
        assert_eq!(line_times(TicketStatus::Queued, true), (Clear, Clear));
    }
}
