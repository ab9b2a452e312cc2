"""The generator: committed files are current, every header declaration is
bound, struct layouts agree with the C compiler, and new declarations in the
header's style (appended sections) generate valid bindings."""

import ctypes
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import BINDINGS, ROOT

sys.path.insert(0, BINDINGS)
import cheader  # noqa: E402
import generate  # noqa: E402

HEADER = os.path.join(ROOT, "include", "fibration.h")


def test_committed_bindings_are_current():
    result = subprocess.run([sys.executable, os.path.join(BINDINGS, "generate.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_check_fails_on_a_stale_file(tmp_path, monkeypatch):
    files = generate.generate()
    stale = {}
    for key, path in generate.OUTPUTS.items():
        target = tmp_path / os.path.basename(path)
        target.write_text(files[path] + ("# stale\n" if key == "python" else ""))
        stale[key] = str(target)
    monkeypatch.setattr(generate, "OUTPUTS", stale)
    # generate() keys by OUTPUTS paths, so --check compares the tmp copies
    assert generate.main(["--check"]) == 1
    assert generate.main([]) == 0
    assert generate.main(["--check"]) == 0


def _header():
    with open(HEADER) as fh:
        return cheader.parse(fh.read())


def test_every_function_is_in_the_table_and_the_library():
    import fibration
    from fibration import _ffi
    header = _header()
    names = [f.name for f in header.functions]
    assert [row[0] for row in _ffi.FUNCTIONS] == names
    for name in names:
        assert callable(getattr(fibration.lib, name))
        assert not isinstance(getattr(fibration.lib, name), fibration._library._Missing), \
            "%s is in the header but not exported by %s" % (name, fibration.library_path)
    nm = shutil.which("nm")
    if nm:
        out = subprocess.run([nm, "-D", "--defined-only", fibration.library_path],
                             capture_output=True, text=True).stdout
        exported = {line.split()[-1].split("@")[0] for line in out.splitlines()
                    if line.split()[-1].startswith("fib_")}
        assert set(names) <= exported, set(names) - exported
        assert exported <= set(names), "exported but not in the header: %s" % (exported - set(names))


def test_constants_match_the_header():
    from fibration import _ffi
    import fibration
    for c in _header().constants:
        assert getattr(_ffi, c.name) == c.value
        assert getattr(fibration, c.name[4:]) == c.value
    assert _ffi.FIB_E_SHAPE == -3 and _ffi.FIB_COPY == 1


@pytest.mark.skipif(not shutil.which("cc"), reason="no C compiler")
def test_struct_layouts_match_the_c_compiler(tmp_path):
    from fibration import _ffi
    header = _header()
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "fibration.h"',
             'int main(void) {']
    for s in header.structs:
        lines.append('printf("%s %%zu\\n", sizeof(%s));' % (s.name, s.name))
        for f in s.fields:
            lines.append('printf("%s.%s %%zu\\n", offsetof(%s, %s));'
                         % (s.name, f.name, s.name, f.name))
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run(["cc", "-std=c11", "-I", os.path.join(ROOT, "include"), str(src), "-o",
                    str(exe)], check=True)
    c_layout = dict(line.rsplit(" ", 1) for line in
                    subprocess.run([str(exe)], capture_output=True, text=True,
                                   check=True).stdout.splitlines())
    for s in header.structs:
        cls = getattr(_ffi, s.name)
        assert ctypes.sizeof(cls) == int(c_layout[s.name]), s.name
        for f in s.fields:
            assert getattr(cls, f.name).offset == int(c_layout["%s.%s" % (s.name, f.name)])


# A section in the header's style, as teammates append them.
APPENDED = textwrap.dedent("""
    #define FIB_TEST_FORMAT 1
    #define FIB_TEST_MAX 255u
    #define FIB_TEST_MAGIC "FIBR"
    typedef struct fib_test_model fib_test_model;
    /* Options of fib_test_load. */
    typedef struct fib_test_options {
        size_t struct_size;
        int32_t format;
        uint32_t flags;
        const char *name_filter;  /* may be NULL */
        fib_progress_fn progress;
        void *progress_user;
        uint8_t reserved[16];
    } fib_test_options;
    FIB_API int32_t fib_test_options_init(fib_test_options *options,
                                          size_t struct_size);
    /* Loads a model.
     *     indented formula lines stay out of doctests
     */
    FIB_API int32_t fib_test_load(const char *path,
                                   const fib_test_options *options,
                                   fib_test_model **out);
    FIB_API void fib_test_free(fib_test_model *model);
    FIB_API int32_t fib_test_add_edges(fib_graph *graph, int32_t group,
                                        const int64_t *src, const int64_t *dst,
                                        const double *weight, int64_t n_edges,
                                        const char *const *type_names);
    """)


def _extended_header(tmp_path):
    with open(HEADER) as fh:
        text = fh.read()
    cut = text.rindex("#ifdef __cplusplus")
    path = tmp_path / "fibration.h"
    path.write_text(text[:cut] + APPENDED + text[cut:])
    return str(path)


def test_appended_declarations_generate(tmp_path):
    files = generate.generate(_extended_header(tmp_path))
    py = files[generate.OUTPUTS["python"]]
    namespace = {}
    exec(compile(py, "_ffi.py", "exec"), namespace)
    rows = {row[0]: row for row in namespace["FUNCTIONS"]}
    assert "fib_test_load" in rows and "fib_test_add_edges" in rows
    assert namespace["FIB_TEST_MAGIC"] == "FIBR" and namespace["FIB_TEST_MAX"] == 255
    opts = namespace["fib_test_options"]
    assert [f[0] for f in opts._fields_][-1] == "reserved"
    assert ctypes.sizeof(opts) == 8 + 4 + 4 + 8 + 8 + 8 + 16
    rust = files[generate.OUTPUTS["rust"]]
    assert "pub fn fib_test_load(path: *const c_char, options: *const fib_test_options, " \
           "out: *mut *mut fib_test_model) -> i32;" in rust
    assert "type_names: *const *const c_char" in rust
    assert "pub reserved: [u8; 16]," in rust
    assert "pub const FIB_TEST_MAGIC: &str = \"FIBR\";" in rust
    assert "///     indented" not in rust  # would be a doctest
    jl = files[generate.OUTPUTS["julia"]]
    assert "reserved::NTuple{16, UInt8}" in jl
    assert "function fib_test_load(path, options, out)" in jl


def test_the_parser_rejects_what_it_cannot_bind():
    for bad in ["FIB_API int fib_x(int a);",                 # not fixed-width
                "FIB_API int32_t fib_x(int32_t);",           # unnamed parameter
                "FIB_API int32_t fib_x(struct foo *p);",      # unknown type
                "enum fib_kind { A, B };"]:
        with pytest.raises(cheader.HeaderError):
            cheader.parse("#include <stdint.h>\n" + bad + "\n")


@pytest.mark.skipif(not shutil.which("cargo"), reason="no cargo")
def test_appended_declarations_compile_in_rust(tmp_path):
    files = generate.generate(_extended_header(tmp_path))
    crate = tmp_path / "sys"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text('[package]\nname = "sys-check"\nversion = "0.0.0"\n'
                                      'edition = "2021"\n[lib]\npath = "src/lib.rs"\n'
                                      '[workspace]\n')
    (crate / "src" / "lib.rs").write_text(files[generate.OUTPUTS["rust"]])
    result = subprocess.run(["cargo", "check", "--offline", "--quiet"], cwd=crate,
                            capture_output=True, text=True,
                            env=dict(os.environ, CARGO_TARGET_DIR=str(tmp_path / "target")))
    assert result.returncode == 0, result.stderr[-3000:]
