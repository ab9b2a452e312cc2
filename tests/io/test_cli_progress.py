"""Progress of the long verbs (docs/cli.md): shown on stderr only when it is
a terminal and --quiet is not given, never mixed into piped output. A
pseudo-terminal stands in for the terminal; FIBRATION_TEST_PROGRESS_AT_ONCE
makes the command report from its first step instead of after a second, so
that the tests need no slow model."""
import os
import pty
import subprocess

import numpy as np
import pytest

import st_io

GUARD = 120  # a guard against a hang, never an assertion on time


def chain_model(path, widths, seed=0):
    rng = np.random.default_rng(seed)
    tensors = {}
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        tensors[f"{2 * i}.weight"] = rng.normal(size=(b, a))
        tensors[f"{2 * i}.bias"] = rng.normal(size=b)
    st_io.write(str(path), tensors)
    return path


def run_with_stderr_on_a_terminal(args, env):
    """Runs the command with stderr on a pseudo-terminal (stdout a pipe);
    returns (exit code, stdout, what the terminal received)."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([st_io.cli(), *map(str, args)], stdout=subprocess.PIPE,
                                stderr=follower, env=env)
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the command closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        out = proc.stdout.read()
        return proc.wait(timeout=GUARD), out, seen
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)


@pytest.fixture
def at_once():
    return dict(os.environ, FIBRATION_TEST_PROGRESS_AT_ONCE="1")


@pytest.fixture
def model(tmp_path):
    return chain_model(tmp_path / "model.safetensors", [12, 10, 8, 3])


@pytest.fixture
def edges(tmp_path):
    path = tmp_path / "edges.csv"
    path.write_text("source,target\n" + "".join(f"n{i},n{(i + 1) % 50}\n" for i in range(50)))
    return path


def test_budget_progress_shown_on_a_terminal(model, tmp_path, at_once):
    rc, out, seen = run_with_stderr_on_a_terminal(
        ["compress", model, "--budget", "0.6", "-o", tmp_path / "b.safetensors"], at_once)
    assert rc == 0, seen
    assert b"budget: step" in seen
    assert b"budget" not in out.split(b"by budget")[0]  # stdout has the summary only
    # the steps count up to their total
    steps = [line.split(b"step ")[1].split(b",")[0] for line in seen.split(b"\r")
             if b"budget: step" in line]
    pairs = [tuple(int(x) for x in s.split(b" of ")) for s in steps]
    assert [d for d, _ in pairs] == sorted(d for d, _ in pairs)
    assert pairs[-1][0] == pairs[-1][1]


def test_graph_progress_shown_on_a_terminal(edges, at_once):
    rc, out, seen = run_with_stderr_on_a_terminal(["graph", edges], at_once)
    assert rc == 0, seen
    assert b"reading" in seen and b"fibers: step" in seen
    # the cycles and the base graph, after the refinement, are announced too
    assert seen.index(b"fibers: step") < seen.index(b"base graph of")
    assert b"step" not in out and out.startswith(b"graph: ")


@pytest.mark.parametrize("verb", ["graph", "budget", "analyze"])
def test_quiet_shows_no_progress_on_a_terminal(verb, model, edges, tmp_path, at_once):
    args = {"graph": ["graph", edges, "-q"],
            "budget": ["compress", model, "--budget", "0.6", "-o", tmp_path / "b.st", "-q"],
            "analyze": ["analyze", model, "-q"]}[verb]
    rc, _, seen = run_with_stderr_on_a_terminal(args, at_once)
    assert rc == 0 and seen == b""


@pytest.mark.parametrize("verb", ["graph", "budget", "compress", "analyze"])
def test_no_progress_when_stderr_is_not_a_terminal(verb, model, edges, tmp_path, at_once):
    args = {"graph": ["graph", edges],
            "budget": ["compress", model, "--budget", "0.6", "-o", tmp_path / "b.st"],
            "compress": ["compress", model, "--eps", "10", "-o", tmp_path / "c.st"],
            "analyze": ["analyze", model]}[verb]
    proc = subprocess.run([st_io.cli(), *map(str, args)], capture_output=True,
                          timeout=GUARD, env=at_once)
    assert proc.returncode == 0 and proc.stderr == b""
    assert b"step" not in proc.stdout
