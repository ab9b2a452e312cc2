"""The `fibration` command never destroys what is not its own (issue 19,
section 2; docs/cli.md "Files"): devices, symlinks and modes survive an
output, no temporary file outlives a failed or killed run, a full stdout is
an error, a model file truncated while mapped is an I/O error, and FIFOs or
devices given as inputs are refused at once instead of hanging."""
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import tempfile

import numpy as np
import pytest

import st_io

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "docs", "examples", "fashion_mlp.safetensors")
# a guard against a hang, far above any run here; never an assertion on time
GUARD = 120
needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="replacing a device node needs root")


def run(*args, **kwargs):
    return subprocess.run([st_io.cli(), *map(str, args)], capture_output=True,
                          timeout=GUARD, **kwargs)


def _parents(path):
    while os.path.dirname(path) != path:
        path = os.path.dirname(path)
        yield path


def temporaries(folder):
    return [n for n in os.listdir(folder) if ".tmp-" in n]


def chain_model(path, widths, seed=0):
    """A state dict of an nn.Sequential of Linear layers (float64) whose
    first hidden units 0 and 1 are twins (equal rows and biases, read by
    equal columns), so that compress has a class to merge and writes."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        tensors[f"{2 * i}.weight"] = rng.normal(size=(b, a))
        tensors[f"{2 * i}.bias"] = rng.normal(size=b)
    if len(widths) > 2:
        for name in ("0.weight", "0.bias"):
            tensors[name][1] = tensors[name][0]
        tensors["2.weight"][:, 1] = tensors["2.weight"][:, 0]
    st_io.write(str(path), tensors)
    return path


@pytest.fixture
def model(tmp_path):
    return chain_model(tmp_path / "model.safetensors", [6, 5, 4, 3])


# ---- outputs: special files are written in place, never replaced ----

@needs_root
@pytest.mark.parametrize("verb", ["compress", "break"])
def test_dev_full_output_fails_and_stays_a_device(model, verb):
    before = os.stat("/dev/full")
    r = run(verb, model, "-o", "/dev/full")
    assert r.returncode == 3, r.stderr
    assert b"/dev/full" in r.stderr and b"No space left" in r.stderr
    after = os.stat("/dev/full")
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


@pytest.mark.parametrize("name", ["-", "/dev/stdout"])
def test_stdout_output_is_written_through_the_pipe(model, tmp_path, name):
    link = os.lstat("/dev/stdout")
    r = run("compress", model, "-o", name)
    assert r.returncode == 0, r.stderr
    reference = tmp_path / "reference.safetensors"
    assert run("compress", model, "-o", reference, "-q").returncode == 0
    # the file alone on stdout (no summary mixed in), byte for byte
    assert r.stdout == reference.read_bytes()
    assert os.lstat("/dev/stdout").st_mode == link.st_mode


def test_fifo_output_is_written_in_place(model, tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([st_io.cli(), "compress", str(model), "-o", str(fifo), "-q"],
                            stderr=subprocess.PIPE)
    with open(fifo, "rb") as f:
        data = f.read()
    assert proc.wait(timeout=GUARD) == 0, proc.stderr.read()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    reference = tmp_path / "reference.safetensors"
    assert run("compress", model, "-o", reference, "-q").returncode == 0
    assert data == reference.read_bytes()


def test_folder_output_refused(model, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    r = run("compress", model, "-o", folder)
    assert r.returncode == 3
    assert b"is a folder" in r.stderr
    assert folder.is_dir() and not os.listdir(folder)


# ---- outputs: regular files are replaced atomically, through symlinks ----

def test_symlink_target_written_through(model, tmp_path):
    real = tmp_path / "cache" / "blob"
    real.parent.mkdir()
    real.write_bytes(b"old content")
    link = tmp_path / "model-link.safetensors"
    link.symlink_to(os.path.relpath(real, tmp_path))
    r = run("compress", model, "-o", link, "-q")
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == os.path.relpath(real, tmp_path)
    assert real.read_bytes()[:8] != b"old cont"
    assert run("analyze", real, "-q").returncode == 0
    assert temporaries(tmp_path) == [] and temporaries(real.parent) == []


def test_dangling_symlink_gets_its_target_created(model, tmp_path):
    link = tmp_path / "link.safetensors"
    real = tmp_path / "real.safetensors"
    link.symlink_to("real.safetensors")
    assert run("compress", model, "-o", link, "-q").returncode == 0
    assert link.is_symlink() and real.is_file()


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604])
def test_existing_mode_kept(model, tmp_path, mode):
    out = tmp_path / "base.safetensors"
    out.write_bytes(b"x")
    os.chmod(out, mode)
    assert run("compress", model, "-o", out, "-q").returncode == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == mode
    assert out.stat().st_size > 1


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o027])
def test_new_file_honours_umask(model, tmp_path, mask):
    out = tmp_path / "base.safetensors"

    def set_umask():
        os.umask(mask)
    assert run("compress", model, "-o", out, "-q", preexec_fn=set_umask).returncode == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o666 & ~mask


@needs_root
def test_existing_owner_kept_as_root(model, tmp_path):
    out = tmp_path / "base.safetensors"
    out.write_bytes(b"x")
    os.chown(out, 4321, 4322)
    assert run("compress", model, "-o", out, "-q").returncode == 0
    assert (out.stat().st_uid, out.stat().st_gid) == (4321, 4322)


def test_read_only_target_not_replaced(tmp_path):
    """A file its owner made read-only is refused, as `>` refuses it (run as
    an unprivileged user when root: root may write anything)."""
    as_user = None
    folder = tmp_path
    if os.geteuid() == 0:
        # the unprivileged user must reach the command: a checkout inside a
        # private folder (mktemp -d) hides it, which says nothing of the command
        exe = os.path.realpath(st_io.cli())
        for part in [exe] + [p for p in _parents(exe)]:
            if not os.stat(part).st_mode & stat.S_IXOTH:
                pytest.skip(f"{part} is not searchable by other users")

        def as_user():
            os.setgid(65534)
            os.setuid(65534)
        # pytest's folders are private to root: one in the system's /tmp
        folder = tempfile.mkdtemp(prefix="fib-readonly-")
        os.chmod(folder, 0o777)
    try:
        model = chain_model(os.path.join(folder, "model.safetensors"), [6, 5, 4, 3])
        os.chmod(model, 0o644)
        out = os.path.join(folder, "base.safetensors")
        with open(out, "wb") as f:
            f.write(b"precious")
        os.chmod(out, 0o444)
        r = run("compress", model, "-o", out, "-q", preexec_fn=as_user)
        assert r.returncode == 3, r.stderr
        assert b"Permission denied" in r.stderr
        with open(out, "rb") as f:
            assert f.read() == b"precious"
        assert temporaries(folder) == []
    finally:
        if folder != tmp_path:
            shutil.rmtree(folder)


# ---- no temporary file outlives a failed or killed run ----

def test_no_temporary_left_after_write_error(model, tmp_path):
    """A file size limit makes the write fail half way (EFBIG): exit 3, the
    old file intact, no temporary file."""
    big = chain_model(tmp_path / "big.safetensors", [300, 300, 10])
    out = tmp_path / "base.safetensors"
    out.write_bytes(b"precious")

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    r = run("compress", big, "-o", out, "-q", preexec_fn=limit)
    assert r.returncode == 3, r.stderr
    assert b"write failed" in r.stderr
    assert out.read_bytes() == b"precious"
    assert temporaries(tmp_path) == []


def test_no_temporary_left_after_sigterm(tmp_path):
    """SIGTERM while the temporary file is being written: the run dies of the
    signal, the temporary file is removed, the old file is intact. The
    temporary file is caught by watching the folder; a machine fast enough
    to finish first is retried with a larger model."""
    out = tmp_path / "base.safetensors"
    out.write_bytes(b"precious")
    for width in (1500, 2500, 3500):
        big = chain_model(tmp_path / "big.safetensors", [width, width, 4])
        proc = subprocess.Popen([st_io.cli(), "compress", str(big), "-o", str(out),
                                 "-q"], stderr=subprocess.PIPE)
        seen = False
        while proc.poll() is None and not seen:
            seen = bool(temporaries(tmp_path))
        if seen:
            proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=GUARD)
        assert rc in (0, -signal.SIGTERM), proc.stderr.read()
        assert temporaries(tmp_path) == []
        if rc == -signal.SIGTERM and out.read_bytes() == b"precious":
            return
        # finished (or renamed) before the signal: a complete model
        assert run("analyze", out, "-q").returncode == 0
        out.write_bytes(b"precious")
    pytest.skip("every write finished before its temporary file was seen")


# ---- every verb checks its writes to stdout ----

@pytest.mark.parametrize("args", [
    ["graph", "EDGES"], ["graph", "EDGES", "--json"], ["graph", "EDGES", "--dot"],
    ["analyze", "MODEL"], ["analyze", "MODEL", "--json"],
    ["compress", "MODEL", "-o", "OUT"], ["--version"], ["graph", "--help"],
])
def test_full_stdout_exits_3(model, tmp_path, args):
    edges = tmp_path / "edges.csv"
    edges.write_text("source,target\na,b\nb,c\nc,a\nd,a\n")
    names = {"EDGES": edges, "MODEL": model, "OUT": tmp_path / "out.safetensors"}
    with open("/dev/full", "wb") as full:
        r = subprocess.run([st_io.cli(), *[str(names.get(a, a)) for a in args]],
                           stdout=full, stderr=subprocess.PIPE, timeout=GUARD)
    assert r.returncode == 3, r.stderr
    assert b"cannot write to stdout" in r.stderr


# ---- a model file truncated while it is mapped ----

@pytest.mark.parametrize("verb", ["analyze", "compress"])
def test_model_truncated_while_mapped_reports_a_changed_file(tmp_path, verb):
    """The command stops itself after loading (test-only hook
    FIBRATION_TEST_STOP_AFTER_LOAD, docs/cli.md); the file is truncated, and
    the command goes on reading the weights from the mapping: SIGBUS, which
    it reports as an I/O error instead of dying."""
    path = chain_model(tmp_path / "model.safetensors", [400, 300, 10])
    out = tmp_path / "base.safetensors"
    args = [st_io.cli(), verb, str(path), "-q"] + (["-o", str(out)] if verb == "compress" else [])
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, FIBRATION_TEST_STOP_AFTER_LOAD="1"))
    status = None
    try:
        _, stopped = os.waitpid(proc.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(stopped), stopped
        os.truncate(path, 4096)
        os.kill(proc.pid, signal.SIGCONT)
        _, status = os.waitpid(proc.pid, 0)
    finally:
        if status is None:  # not reaped: do not leave it stopped
            os.kill(proc.pid, signal.SIGKILL)
            os.waitpid(proc.pid, 0)
        proc.returncode = -1  # reaped here, not by Popen
    assert os.WIFEXITED(status), "died of signal %d" % os.WTERMSIG(status)
    err = proc.stderr.read()
    assert os.WEXITSTATUS(status) == 3, err
    assert b"the file changed while it was read" in err
    assert not out.exists() and temporaries(tmp_path) == []


# ---- inputs that would block or never end ----

@pytest.mark.parametrize("verb", ["analyze", "graph"])
def test_fifo_without_writer_refused_at_once(tmp_path, verb):
    fifo = tmp_path / "input.fifo"
    os.mkfifo(fifo)
    r = run(verb, fifo)
    assert r.returncode == 3, r.stderr
    assert (b"no writer" if verb == "graph" else b"not a regular file") in r.stderr


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_device_edge_list_refused(device):
    r = run("graph", device)
    assert r.returncode == 3
    assert b"is a device" in r.stderr


def test_device_model_refused():
    r = run("analyze", "/dev/zero")
    assert r.returncode == 3
    assert b"not a regular file" in r.stderr


def test_pipe_edge_list_still_read(tmp_path):
    edges = b"source,target\na,b\nb,c\na,c\nd,b\n"
    expected = tmp_path / "edges.csv"
    expected.write_bytes(edges)
    from_file = run("graph", expected, "--json")
    from_pipe = run("graph", "/dev/stdin", "--json", input=edges)
    assert from_file.returncode == from_pipe.returncode == 0
    a, b = json.loads(from_file.stdout), json.loads(from_pipe.stdout)
    assert a["node_class"] == b["node_class"] and a["classes"] == b["classes"]


def test_named_fifo_with_writer_read(tmp_path):
    fifo = tmp_path / "edges.fifo"
    os.mkfifo(fifo)
    # a reader held open here lets the writer's open return; the writer
    # says so, then writes: the command finds a writer, whenever it comes
    held = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        writer = subprocess.Popen(["sh", "-c", 'exec 3>"$1"; echo ready; '
                                   'printf "source,target\\na,b\\n" >&3', "sh",
                                   str(fifo)], stdout=subprocess.PIPE)
        assert writer.stdout.readline() == b"ready\n"
        r = run("graph", fifo, "--json")
        writer.wait(timeout=GUARD)
    finally:
        os.close(held)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["nodes"] == 2
