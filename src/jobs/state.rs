//! A job's status and executor, as stored in `tenant_ops.jobs` (text, checked there).

use std::fmt;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Queued,
    Running,
    Paused,
    Succeeded,
    Failed,
    Cancelled,
    RolledBack,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Queued,
        Status::Running,
        Status::Paused,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
        Status::RolledBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::RolledBack => "rolled_back",
        }
    }

    /// The status of that name (`None` for anything the catalog's CHECK would refuse).
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether the job has ended (nothing more runs unless it is retried or rolled back).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Succeeded | Status::Failed | Status::Cancelled | Status::RolledBack
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who drives a job's steps (see `crate::jobs::executor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executor {
    /// The calling function, in the caller's transaction.
    Inline,
    /// `CALL tenant_ops.run_job`, a commit per step.
    Procedure,
    /// The background workers.
    Background,
}

impl Executor {
    pub fn as_str(self) -> &'static str {
        match self {
            Executor::Inline => "inline",
            Executor::Procedure => "procedure",
            Executor::Background => "background",
        }
    }

    pub fn parse(s: &str) -> Option<Executor> {
        [Executor::Inline, Executor::Procedure, Executor::Background]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("done"), None);
        for e in [Executor::Inline, Executor::Procedure, Executor::Background] {
            assert_eq!(Executor::parse(e.as_str()), Some(e));
        }
        assert!(Status::RolledBack.is_final() && !Status::Paused.is_final());
    }
}
