# Bases in files: `save_base` writes the base network and its projection
# (fib_base_save), `load_base` reads them back (fib_base_load), so that a
# base lifts and projects without its original. docs/model-files.md
# describes the file.

"""
    save_base(b, path; dtype=nothing)

Saves the base graph and its projection (fib_base_save): each weight tensor
in its block's own precision (`dtype = nothing`), or all as `Float32` or
`Float64`. The file is written beside `path` and renamed over it, so an
existing file is replaced whole or not at all.
"""
function save_base(b::FibrationBase, path::AbstractString;
                   dtype::Union{Type{Float32},Type{Float64},Nothing} = nothing)
    check(fib_base_save(_ptr(b), path, dtype === nothing ? Int32(0) : dtype_code(dtype)))
    return nothing
end

"""
    load_base(path)

A base saved by `save_base` or `fibration compress` (a file, or a base
checkpoint directory, docs/model-files.md): it has no original Graph (`b.original === nothing`); `original_units` and
`projection` answer from the file and `lift(b)` expands it to the
original's shape. The weights are copied (FIB_COPY: the file is closed on
return), as every graph of this package owns its weights.
"""
function load_base(path::AbstractString)
    opts = Ref(fib_load_options())
    check(fib_load_options_init(opts, Csize_t(sizeof(fib_load_options))))
    opts[] = _with(opts[]; copy = FIB_COPY)
    out = Ref{Ptr{fib_base}}(C_NULL)
    check(fib_base_load(path, opts, out))
    return FibrationBase(out[], nothing)
end
