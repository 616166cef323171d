"""GitOps status without processes: revision digests, and how the loop's conditions move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypermesh.model.resources import ResourceKey
from hypermesh.reconcile import gitops
from hypermesh.reconcile.gitops import LoopStatus, PassOutcome
from hypermesh.store import ResourceRecord

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def conds(status: LoopStatus) -> dict[str, tuple[str, str]]:
    return {str(c["type"]): (str(c["status"]), str(c["reason"])) for c in status.conditions}


def test_content_digest_is_order_free_and_sees_every_change() -> None:
    files = [("a.yaml", b"x: 1\n"), ("b/c.yml", b"y: 2\n")]
    digest = gitops.content_digest(files)
    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    assert gitops.content_digest(list(reversed(files))) == digest
    assert gitops.content_digest([("a.yaml", b"x: 2\n"), files[1]]) != digest  # an edit
    assert gitops.content_digest([("z.yaml", b"x: 1\n"), files[1]]) != digest  # a rename
    assert gitops.content_digest(files[:1]) != digest  # a removal
    # Names and bytes cannot run into each other.
    assert gitops.content_digest([("ab", b"c")]) != gitops.content_digest([("a", b"bc")])


def test_git_revision_and_short_forms() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert gitops.git_revision("main", sha) == f"git:main@{sha}"
    assert gitops.git_revision("main", sha, dirty=True) == f"git:main@{sha}+dirty"
    assert gitops.git_revision("", sha) == f"git:HEAD@{sha}"
    assert gitops.short(f"git:main@{sha}+dirty") == "git:main@0123456789ab+dirty"
    assert gitops.short("sha256:" + "f" * 64) == "sha256:ffffffffffff"


def test_a_new_revision_goes_reconciling_then_ready() -> None:
    status = gitops.started(LoopStatus(), {"type": "folder", "paths": ["/m"]}, 5.0, True)
    status = gitops.applying(status, "sha256:one", T0)
    assert conds(status)["Reconciling"] == ("True", gitops.PROGRESSING)
    assert conds(status)["Ready"] == ("Unknown", gitops.PROGRESSING)
    assert status.last_attempted_revision == "sha256:one"
    status = gitops.finished(
        status, PassOutcome("sha256:one", True, 1.5, ("created Node/a",)), T0, stall_after=60
    )
    assert conds(status) == {
        "Ready": ("True", gitops.SUCCEEDED),
        "Reconciling": ("False", "Idle"),
        "Stalled": ("False", "NotStalled"),
    }
    assert status.last_applied_revision == "sha256:one"
    assert status.last_applied_at == "2026-01-02T03:04:05Z"
    assert status.last_pass_changes == ("created Node/a",)
    # A pass over the same revision (drift correction) does not say Reconciling, and keeps
    # when the revision was applied.
    later = T0 + timedelta(seconds=30)
    again = gitops.applying(status, "sha256:one", later)
    assert conds(again)["Reconciling"] == ("False", "Idle")
    again = gitops.finished(again, PassOutcome("sha256:one", True), later, stall_after=60)
    assert again.last_applied_at == status.last_applied_at
    assert again.last_pass_at == "2026-01-02T03:04:35Z"
    # The JSON form round-trips.
    assert LoopStatus.from_json(again.to_json()) == again


def test_failures_retry_then_stall_when_the_same_revision_keeps_failing() -> None:
    status = gitops.finished(LoopStatus(), PassOutcome("r1", True), T0, stall_after=60)
    failing = {"Node/a (net.yaml:7:1)": "StartFailed: port taken"}
    status = gitops.applying(status, "r2", T0)
    status = gitops.finished(status, PassOutcome("r2", False, failing=failing), T0, stall_after=60)
    assert conds(status)["Ready"] == ("False", gitops.PROGRESSING)
    assert conds(status)["Reconciling"][0] == "True"
    assert conds(status)["Stalled"][0] == "False"
    assert status.last_applied_revision == "r1" and status.last_attempted_revision == "r2"
    # Still failing a minute later: Stalled, naming the resource and where it is declared.
    later = T0 + timedelta(seconds=61)
    status = gitops.finished(
        status, PassOutcome("r2", False, failing=failing), later, stall_after=60
    )
    assert status.failures == 2
    assert conds(status)["Stalled"] == ("True", gitops.FAILED)
    assert conds(status)["Reconciling"][0] == "False"
    (stalled,) = [c for c in status.conditions if c["type"] == "Stalled"]
    assert "Node/a (net.yaml:7:1): StartFailed: port taken" in stalled["message"]
    # A fix converges: everything clears.
    fixed = gitops.finished(status, PassOutcome("r3", True), later, stall_after=60)
    assert conds(fixed)["Ready"] == ("True", gitops.SUCCEEDED)
    assert conds(fixed)["Stalled"][0] == "False" and fixed.failures == 0
    assert fixed.failing_since == ""


def test_a_permanent_failure_stalls_at_once_and_prune_refused_too() -> None:
    failing = {"Node/a (x.yaml:1:1)": "bad"}
    status = gitops.finished(
        LoopStatus(), PassOutcome("r", False, failing=failing, permanent=True), T0, stall_after=60
    )
    assert conds(status)["Stalled"] == ("True", gitops.FAILED)
    refused = gitops.finished(
        LoopStatus(), PassOutcome("r", True, refused="refusing to prune 2 of 3"), T0, stall_after=9
    )
    assert conds(refused)["Stalled"] == ("True", gitops.PRUNE_REFUSED)
    assert conds(refused)["Ready"][0] == "False"


def test_invalid_manifests_keep_the_last_good_revision_until_fixed() -> None:
    status = gitops.finished(LoopStatus(), PassOutcome("r1", True), T0, stall_after=60)
    problems = ["net.yaml:4:11: Node/a: spec.listen: expected string"]
    status = gitops.invalid(status, "r2", problems, T0)
    assert conds(status)["Ready"] == ("False", gitops.INVALID)
    assert conds(status)["Stalled"] == ("True", gitops.INVALID)
    (stalled,) = [c for c in status.conditions if c["type"] == "Stalled"]
    assert "net.yaml:4:11" in stalled["message"] and "keeping r1" in stalled["message"]
    # Passes over the last good files go on (drift correction) but do not hide the problem.
    status = gitops.finished(status, PassOutcome("r1", True), T0, stall_after=60)
    assert conds(status)["Ready"] == ("False", gitops.INVALID)
    assert status.last_attempted_revision == "r2" and status.last_applied_revision == "r1"
    # A valid revision clears it.
    status = gitops.applying(status, "r3", T0)
    status = gitops.finished(status, PassOutcome("r3", True), T0, stall_after=60)
    assert conds(status)["Ready"] == ("True", gitops.SUCCEEDED) and not status.problems


def test_suspended_reports_what_waits_and_keeps_ready() -> None:
    status = gitops.finished(LoopStatus(), PassOutcome("r1", True), T0, stall_after=60)
    status = gitops.suspended(status, ["update Node/a (tags)"], "maintenance", T0)
    assert conds(status)["Ready"] == ("True", gitops.SUCCEEDED)
    assert conds(status)["Reconciling"] == ("False", gitops.SUSPENDED)
    (rec,) = [c for c in status.conditions if c["type"] == "Reconciling"]
    assert rec["message"] == "suspended: maintenance; 1 change(s) waiting: update Node/a (tags)"
    assert status.pending == ("update Node/a (tags)",)


def test_source_condition_after_a_pull() -> None:
    status = gitops.source_result(LoopStatus(), "fatal: Not possible to fast-forward", T0)
    assert conds(status)["SourceReady"] == ("False", gitops.PULL_FAILED)
    status = gitops.source_result(status, None, T0)
    assert conds(status)["SourceReady"] == ("True", gitops.PULLED)


def test_next_expiry_is_the_earliest_still_ahead() -> None:
    def net(name: str, expires: str, mode: str = "ephemeral") -> ResourceRecord:
        return ResourceRecord(
            ResourceKey("Network", name),
            None,
            1,
            "",
            {"mode": mode, "ttl": "1m"},
            1,
            False,
            status={"expiresAt": expires},
        )

    records = [
        net("past", "2026-01-02T03:00:00Z"),
        net("soon", "2026-01-02T03:05:00Z"),
        net("later", "2026-01-02T04:00:00Z"),
        net("private", "2026-01-02T03:04:30Z", mode="private"),
    ]
    assert gitops.next_expiry(records, T0) == datetime(2026, 1, 2, 3, 5, tzinfo=UTC)
    assert gitops.next_expiry(records[:1], T0) is None
