"""rootless.idmap: /etc/subuid parsing, podman's mapping, translation both ways, and the messages."""

import logging
import os

import pytest

from rootless import idmap
from rootless.errors import IdMapError, RootlessError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def rows(lines):
    return [line.split() for line in lines]


# The subid files below are made-up files of made-up users in tmp_path, read by the parser: no
# test here depends on this host's /etc/subuid (test_userns*.py derive the real ranges). The ids
# of the first tests are derived from this process's uid, so that none can be taken for a host's.
UID = os.getuid() + 4000  # alice's uid; bob's and carol's follow
SIZE = 1 << 16
S1, S2, S3, S4, S5 = (UID * 64 + k * SIZE for k in range(1, 6))  # range starts, apart


def test_entries_by_name_and_numeric_uid_in_file_order(tmp_path):
    text = f"alice:{S3}:10\nbob:{S1}:{SIZE}\n{UID}:{S2}:1000\nalice:{S4}:5\n"
    path = write(tmp_path, "subuid", text)
    assert idmap.parse_subid_file(path, "alice", UID) == [(S3, 10), (S2, 1000), (S4, 5)]
    assert idmap.parse_subid_file(path, "bob", UID + 1) == [(S1, SIZE)]
    assert idmap.parse_subid_file(path, "carol", UID + 2) == []


def test_comments_blanks_and_whitespace(tmp_path, caplog):
    text = f"# admins: keep sorted\n\n   \nalice:{S1}:{SIZE}  \n  # alice:1:1\n"
    path = write(tmp_path, "subuid", text)
    with caplog.at_level(logging.WARNING):
        assert idmap.parse_subid_file(path, "alice", UID) == [(S1, SIZE)]
    assert caplog.records == []


def test_malformed_lines_are_skipped_with_file_and_line(tmp_path, caplog):
    text = "\n".join(
        [
            f"alice:{S1}:{SIZE}",  # 1 ok
            "alice:abc:10",  # 2 bad number
            "alice:1:2:3",  # 3 too many fields
            "garbage",  # 4 unknown owner, no colon
            f"alice:{S5}:0",  # 5 empty range
            "bob:x:y",  # 6 someone else's: not our business
            f"{UID}:{S2}:100",  # 7 ok (numeric key)
        ]
    )
    path = write(tmp_path, "subuid", text + "\n")
    with caplog.at_level(logging.WARNING):
        assert idmap.parse_subid_file(path, "alice", UID) == [(S1, SIZE), (S2, 100)]
    msgs = [r.getMessage() for r in caplog.records]
    for n in (2, 3, 4, 5):
        assert any(m.startswith(f"{path}:{n}: malformed line skipped") for m in msgs), msgs
    assert not any(f"{path}:6:" in m for m in msgs)
    assert len(msgs) == 4


def test_missing_file_is_no_entries(tmp_path):
    assert idmap.parse_subid_file(str(tmp_path / "nope"), "alice", 5000) == []


def test_podman_mapping_and_kernel_lines(tmp_path):
    sub = write(tmp_path, "subuid", "alice:100000:65536\nalice:300000:1000\n")
    subg = write(tmp_path, "subgid", "alice:200000:65536\n")
    m = idmap.for_user("alice", 5000, sub, subg, gid=6000)
    assert m.uid_ranges == [
        idmap.IdRange(0, 5000, 1),
        idmap.IdRange(1, 100000, 65536),
        idmap.IdRange(65537, 300000, 1000),
    ]
    assert rows(m.uid_map_lines()) == [
        ["0", "5000", "1"],
        ["1", "100000", "65536"],
        ["65537", "300000", "1000"],
    ]
    assert rows(m.gid_map_lines()) == [["0", "6000", "1"], ["1", "200000", "65536"]]
    # exactly the kernel's format: "%10u %10u %10u"
    assert m.uid_map_lines()[0] == "         0       5000          1"
    assert (
        m.gid_map_text() == "         0       6000          1\n         1     200000      65536\n"
    )
    assert m.max_container_uid == 66536
    assert m.max_container_gid == 65536
    assert not m.is_single and m.fallback_reason is None


def test_translation_both_ways(tmp_path):
    sub = write(tmp_path, "subuid", "alice:100000:65536\nalice:300000:1000\n")
    m = idmap.for_user("alice", 5000, sub, sub, gid=5000)
    assert m.to_host_uid(0) == 5000
    assert m.to_host_uid(33) == 100032
    assert m.to_host_uid(65537) == 300000
    assert m.to_container_uid(5000) == 0
    assert m.to_container_uid(100032) == 33
    assert m.to_container_uid(300999) == 66536
    assert m.to_host_gid(65534) == 165533
    assert m.to_container_gid(165533) == 65534
    with pytest.raises(idmap.UnmappedIdError) as e:
        m.to_host_uid(70000)
    assert isinstance(e.value, IdMapError) and isinstance(e.value, RootlessError)
    assert "uid 70000" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(IdMapError):
        m.to_container_gid(1234)


def test_range_containing_own_uid_is_rejected(tmp_path):
    sub = write(tmp_path, "subuid", "# x\nalice:1000:65536\n")
    ok = write(tmp_path, "subgid", "alice:100000:65536\n")
    with pytest.raises(IdMapError) as e:
        idmap.for_user("alice", 5000, sub, ok, gid=5000)
    msg = str(e.value)
    assert msg.startswith(f"{sub}:2: the range 1000-66535 for alice contains alice's own uid 5000")
    assert "usermod --del-subuids 1000-66535 --add-subuids" in msg
    assert "\n" not in msg


def test_overlapping_ranges_are_rejected(tmp_path):
    sub = write(tmp_path, "subuid", "alice:100000:65536\nalice:150000:10\n")
    with pytest.raises(
        IdMapError, match=r":2: the range 150000\+10 for alice overlaps the one on line 1"
    ):
        idmap.for_user("alice", 5000, sub, sub, gid=5000)


def test_no_entry_gives_the_single_fallback(tmp_path):
    sub = write(tmp_path, "subuid", "bob:100000:65536\n")
    subg = write(tmp_path, "subgid", "alice:100000:65536\n")
    m = idmap.for_user("alice", 5000, sub, subg, gid=5000, nsswitch=str(tmp_path / "none"))
    assert m.is_single
    assert rows(m.uid_map_lines()) == [["0", "5000", "1"]]
    assert rows(m.gid_map_lines()) == [["0", "5000", "1"]]
    assert m.fallback_reason.startswith(f"no subordinate ids for alice in {sub}:")
    assert "some images will not work" in m.fallback_reason
    # the suggested range does not collide with anyone's
    assert (
        "sudo usermod --add-subuids 165536-231071 --add-subgids 165536-231071 alice"
        in m.fallback_reason
    )


def test_nsswitch_subid_from_sss_is_explained(tmp_path):
    empty = write(tmp_path, "subuid", "")
    ns = write(tmp_path, "nsswitch.conf", "passwd: files sss\nsubid:  sss\n")
    m = idmap.for_user("alice", 5000, empty, empty, gid=5000, nsswitch=ns)
    assert "'subid: sss'" in m.fallback_reason
    assert "rootless reads only /etc/subuid and /etc/subgid" in m.fallback_reason
    assert "getsubids alice" in m.fallback_reason
    ns_files = write(tmp_path, "ns2", "subid: files\n")
    assert idmap.nsswitch_hint("alice", ns_files) is None


def test_environment_knobs_replace_the_files(tmp_path, monkeypatch):
    sub = write(tmp_path, "subuid", "alice:700000:10\n")
    monkeypatch.setenv("ROOTLESS_SUBUID_FILE", sub)
    monkeypatch.setenv("ROOTLESS_SUBGID_FILE", sub)
    m = idmap.for_user("alice", 5000, gid=5000)
    assert m.to_host_uid(1) == 700000 and m.to_host_gid(10) == 700009
    assert m.subuid_path == sub


def test_root_gets_the_identity_map():
    m = idmap.for_user("root", 0)
    assert m.identity
    assert m.to_host_uid(12345) == 12345 and m.to_container_gid(70000) == 70000
    assert rows(m.uid_map_lines()) == [["0", "0", "4294967295"]]


def test_range_too_small_message(tmp_path):
    sub = write(tmp_path, "subuid", "alice:100000:65536\n")
    m = idmap.for_user("alice", 5000, sub, sub, gid=5000)
    msg = idmap.range_too_small_message("uid", 70000, m)
    assert msg == (
        f"the image uses uid 70000 but the user namespace maps only container uids 0-65536 ({sub} gives "
        "alice 65536 ids); give alice at least 4464 more: sudo usermod --add-subuids 165536-231071 alice, "
        "then pull again (see docs/subuid.md)"
    )
    single = idmap.for_user("alice", 5000, str(tmp_path / "none"), str(tmp_path / "none"), gid=5000)
    msg = idmap.range_too_small_message("gid", 42, single)
    assert msg.startswith("the image uses gid 42 but alice has no subordinate ids")
    # the translation error carries the same text
    with pytest.raises(idmap.UnmappedIdError) as e:
        m.to_host_uid(70000)
    assert str(e.value) == idmap.range_too_small_message("uid", 70000, m)


def test_docs_quote_the_messages(tmp_path, caplog):
    """docs/subuid.md shows each message exactly as rootless prints it (paths and numbers as in the doc)."""
    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "subuid.md")).read()

    def etc(text, path, real="/etc/subuid"):
        return text.replace(path, real)

    sub = write(tmp_path, "subuid", "tester:100000:65536\ntester:oops\n")
    with caplog.at_level(logging.WARNING):
        m = idmap.for_user("tester", 1001, sub, sub, gid=1001)
    assert "WARNING: " + etc(caplog.records[0].getMessage(), sub) in doc
    assert etc(idmap.range_too_small_message("uid", 70000, m), sub) in doc

    bad = write(tmp_path, "bad", "tester:1000:65536\n")
    with pytest.raises(IdMapError) as e:
        idmap.for_user("tester", 1001, bad, sub, gid=1001)
    assert "Error: " + etc(str(e.value), bad) in doc

    empty = write(tmp_path, "empty", "")
    single = idmap.for_user("tester", 1001, empty, empty, gid=1001, nsswitch=str(tmp_path / "none"))
    reason = single.fallback_reason.replace(f"{empty} and {empty}", "/etc/subuid and /etc/subgid")
    assert "WARNING: " + reason.replace("100000-165535", "165536-231071") in doc
    ns = write(tmp_path, "ns", "subid: sss\n")
    assert idmap.nsswitch_hint("tester", ns) in doc
