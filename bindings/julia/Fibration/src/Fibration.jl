"""
    Fibration

Julia bindings of libfibration: find the fibration symmetries (fibers,
flavoured opfibers, covers) of a network and compress it by them.

The library is `ENV["FIBRATION_LIBRARY"]` (a path) when set, otherwise
`libfibration` found through `Libdl.DL_LOAD_PATH` and the system's search
path. Group ids, unit indices and class labels are 1-based; weight matrices
are n_out x n_in; batches are n_features x batch (see src/convert.jl).
"""
module Fibration

using Libdl
import LinearAlgebra

const LinearAlgebraTranspose = LinearAlgebra.Transpose{<:Union{Float32,Float64},<:Matrix}

export Graph, Coloring, FibrationBase, FibrationError,
       add_input!, add_dense!, add_sum!, set_activation!, set_name!,
       num_groups, group_info, num_parameters, io_width, forward, read_dense,
       color, color_nested, coloring, num_classes, colors, class_sizes, set_group!, is_balanced,
       compress, compress_to_budget, base_graph, projection, original_units, lift,
       break_symmetry, save_base, load_base, library_version

# -- the library ------------------------------------------------------------

const _handle = Ref{Ptr{Cvoid}}(C_NULL)

function _library_handle()
    if _handle[] == C_NULL
        path = get(ENV, "FIBRATION_LIBRARY", "")
        _handle[] = isempty(path) ? Libdl.dlopen("libfibration") : Libdl.dlopen(path)
    end
    return _handle[]
end

"Resolves a C function once and caches its address in `cache`."
function _cfunction(cache::Ref{Ptr{Cvoid}}, name::Symbol)
    if cache[] == C_NULL
        cache[] = Libdl.dlsym(_library_handle(), name)
    end
    return cache[]
end

include("generated.jl")
include("convert.jl")

function library_version()
    n = Int(fib_version())
    return VersionNumber(n ÷ 10000, n ÷ 100 % 100, n % 100)
end

function __init__()
    v = library_version()
    if v.major != HEADER_VERSION.major || v < VersionNumber(HEADER_VERSION.major, HEADER_VERSION.minor)
        error("libfibration $v does not match the bindings (generated from fibration.h $HEADER_VERSION)")
    end
end

# -- errors -------------------------------------------------------------------

"A failed call: the FIB_E_* `code`, its `name` and the library's `message`."
struct FibrationError <: Exception
    code::Int32
    name::String
    message::String
end

Base.showerror(io::IO, e::FibrationError) = print(io, "FibrationError: ", e.message, " (", e.name, ")")

_string(p::Ptr{Cchar}) = p == C_NULL ? "" : unsafe_string(p)

function check(status::Integer)
    status == FIB_OK && return nothing
    message = _string(fib_last_error())
    throw(FibrationError(Int32(status), _string(fib_status_name(Int32(status))), message))
end

# -- handles ----------------------------------------------------------------

const ACTIVATIONS = Dict(:linear => FIB_ACT_LINEAR, :relu => FIB_ACT_RELU,
                         :leaky_relu => FIB_ACT_LEAKY_RELU, :tanh => FIB_ACT_TANH,
                         :sigmoid => FIB_ACT_SIGMOID, :gelu => FIB_ACT_GELU,
                         :silu => FIB_ACT_SILU, :relu6 => FIB_ACT_RELU6,
                         :hardswish => FIB_ACT_HARDSWISH,
                         :hardsigmoid => FIB_ACT_HARDSIGMOID, :mish => FIB_ACT_MISH,
                         :softplus => FIB_ACT_SOFTPLUS, :gelu_tanh => FIB_ACT_GELU_TANH)
const SYMMETRIES = Dict(:fibers => FIB_SYM_FIBERS, :opfibers => FIB_SYM_OPFIBERS,
                        :covers => FIB_SYM_COVERS)
const OPS = Dict(FIB_OP_INPUT => :input, FIB_OP_DENSE => :dense, FIB_OP_SUM => :sum)

"""
    Graph()

A network of groups of units. Weights are copied into the graph (FIB_COPY).
Freed by its finalizer or by `close(g)` (idempotent).
"""
mutable struct Graph
    ptr::Ptr{fib_graph}
    owner::Any  # the FibrationBase that owns this graph, or nothing
    function Graph(ptr::Ptr{fib_graph}, owner = nothing)
        g = new(ptr, owner)
        owner === nothing && finalizer(close, g)
        return g
    end
end

function Graph()
    out = Ref{Ptr{fib_graph}}(C_NULL)
    check(fib_graph_create(out))
    return Graph(out[])
end

function Base.close(g::Graph)
    if g.ptr != C_NULL && g.owner === nothing
        fib_graph_free(g.ptr)
    end
    g.ptr = C_NULL
    return nothing
end

function _ptr(g::Graph)
    g.ptr == C_NULL && throw(ArgumentError("the graph is closed"))
    return g.ptr
end

"A partition of every group's units into classes; keeps its graph alive."
mutable struct Coloring
    ptr::Ptr{fib_coloring}
    graph::Graph
    function Coloring(ptr::Ptr{fib_coloring}, graph::Graph)
        c = new(ptr, graph)
        finalizer(close, c)
        return c
    end
end

function Base.close(c::Coloring)
    c.ptr != C_NULL && fib_coloring_free(c.ptr)
    c.ptr = C_NULL
    return nothing
end

function _ptr(c::Coloring)
    c.ptr == C_NULL && throw(ArgumentError("the colouring is closed"))
    return c.ptr
end

"""
A compressed network (`base_graph(b)`) and the projection onto it.
`original` is the Graph it was made of (`nothing` for a base read by
`load_base`).
"""
mutable struct FibrationBase
    ptr::Ptr{fib_base}
    original::Union{Graph,Nothing}
    function FibrationBase(ptr::Ptr{fib_base}, original::Union{Graph,Nothing})
        b = new(ptr, original)
        finalizer(close, b)
        return b
    end
end

function Base.close(b::FibrationBase)
    b.ptr != C_NULL && fib_base_free(b.ptr)
    b.ptr = C_NULL
    return nothing
end

function _ptr(b::FibrationBase)
    b.ptr == C_NULL && throw(ArgumentError("the base is closed"))
    return b.ptr
end

# -- building -----------------------------------------------------------------

function add_input!(g::Graph, n_units::Integer)
    out = Ref{Int32}(0)
    check(fib_graph_add_input(_ptr(g), Int64(n_units), out))
    return jgroup(out[])
end

"""
    add_dense!(g, source, W; bias=nothing, activation=:linear, parameter=0.0)

Adds z = W x + bias over group `source`; W is n_out x n_in (Float32 or Float64).
Returns the new group's id.
"""
function add_dense!(g::Graph, source::Integer, W::AbstractMatrix; bias = nothing,
                    activation::Symbol = :linear, parameter::Real = 0.0)
    rows = rowmajor(W)                     # n_in x n_out in Julia = row-major W
    T = eltype(rows)
    n_out, n_in = size(W)
    b = bias === nothing ? nothing : convert(Vector{T}, bias)
    out = Ref{Int32}(0)
    GC.@preserve rows b begin
        check(fib_graph_add_dense(_ptr(g), cgroup(source), Int64(n_out), dtype_code(T),
                                  pointer(rows), Int64(n_in),
                                  b === nothing ? C_NULL : pointer(b), FIB_COPY, out))
    end
    group = jgroup(out[])
    activation != :linear && set_activation!(g, group, activation, parameter)
    return group
end

function add_sum!(g::Graph, a::Integer, b::Integer)
    out = Ref{Int32}(0)
    check(fib_graph_add_sum(_ptr(g), cgroup(a), cgroup(b), out))
    return jgroup(out[])
end

function set_activation!(g::Graph, group::Integer, activation::Symbol, parameter::Real = 0.0)
    check(fib_graph_set_activation(_ptr(g), cgroup(group), ACTIVATIONS[activation],
                                   Float64(parameter)))
end

set_name!(g::Graph, group::Integer, name::AbstractString) =
    check(fib_graph_set_group_name(_ptr(g), cgroup(group), name))

# -- reading ------------------------------------------------------------------

function num_groups(g::Graph)
    n = Ref{Int32}(0)
    check(fib_graph_num_groups(_ptr(g), n))
    return Int(n[])
end

"A named tuple (op, n_units, activation, parameter, has_bias, sources, is_output, name)."
function group_info(g::Graph, group::Integer)
    op, n, act = Ref{Int32}(0), Ref{Int64}(0), Ref{Int32}(0)
    par, has_bias, n_src, is_out = Ref{Float64}(0), Ref{Int32}(0), Ref{Int32}(0), Ref{Int32}(0)
    check(fib_graph_group_info(_ptr(g), cgroup(group), op, n, act, par, has_bias, n_src, is_out))
    sources = Int[]
    for i in 0:n_src[]-1
        s = Ref{Int32}(0)
        check(fib_graph_group_source(_ptr(g), cgroup(group), Int32(i), s))
        push!(sources, jgroup(s[]))
    end
    activation = first(k for (k, v) in ACTIVATIONS if v == act[])
    return (op = OPS[op[]], n_units = Int(n[]), activation = activation, parameter = par[],
            has_bias = has_bias[] != 0, sources = sources, is_output = is_out[] != 0,
            name = _string(fib_graph_group_name(_ptr(g), cgroup(group))))
end

function num_parameters(g::Graph)
    n = Ref{Int64}(0)
    check(fib_graph_num_parameters(_ptr(g), n))
    return Int(n[])
end

function io_width(g::Graph)
    a, b = Ref{Int64}(0), Ref{Int64}(0)
    check(fib_graph_io_width(_ptr(g), a, b))
    return (Int(a[]), Int(b[]))
end

"(W, bias) of a dense group, W as n_units x n_in."
function read_dense(g::Graph, group::Integer)
    info = group_info(g, group)
    n_in = group_info(g, info.sources[1]).n_units
    w, b = zeros(Float64, info.n_units * n_in), zeros(Float64, info.n_units)
    check(fib_graph_read_dense(_ptr(g), cgroup(group), FIB_DTYPE_F64, w, Int64(n_in), b))
    return from_rowmajor(w, info.n_units, n_in), b
end

"""
    forward(g, X)

The reference forward pass; X is n_inputs x batch (a sample per column) and
the result n_outputs x batch.
"""
function forward(g::Graph, X::Matrix{T}) where {T<:Union{Float32,Float64}}
    n_in, n_out = io_width(g)
    size(X, 1) == n_in || throw(DimensionMismatch("X must have $n_in rows"))
    batch = size(X, 2)
    Y = Matrix{T}(undef, n_out, batch)
    check(fib_graph_forward(_ptr(g), Int64(batch), dtype_code(T), X, Y))
    return Y
end

# -- colourings ---------------------------------------------------------------

function _with(o::T; changes...) where {T}
    return T((haskey(changes, f) ? convert(fieldtype(T, f), changes[f]) : getfield(o, f)
              for f in fieldnames(T))...)
end

const TOLERANCES = Dict(:exact => FIB_TOL_EXACT, :abs => FIB_TOL_ABS, :rel => FIB_TOL_REL,
                        :cosine => FIB_TOL_COSINE, :complete => FIB_TOL_COMPLETE,
                        :ward => FIB_TOL_WARD)

function _color_options(symmetry::Symbol, tolerance::Symbol, eps::Real, scaled::Bool,
                        n_threads::Integer)
    opts = Ref(fib_color_options())
    check(fib_color_options_init(opts, Csize_t(sizeof(fib_color_options))))
    mode = tolerance === :auto ? (eps > 0 ? FIB_TOL_ABS : FIB_TOL_EXACT) : TOLERANCES[tolerance]
    opts[] = _with(opts[]; symmetry = SYMMETRIES[symmetry], eps = Float64(eps),
                   tolerance = mode | (scaled ? FIB_TOL_SCALED : 0), n_threads = n_threads)
    return opts
end

"""
    color(g; symmetry=:fibers, eps=0.0, tolerance=:auto, scaled=false, n_threads=0)

Colours the graph. `tolerance` is `:exact`, `:abs`, `:rel`, `:cosine`,
`:complete` or `:ward` (see fibration.h); `:auto` compares exactly for
`eps == 0` and with `:abs` otherwise. `scaled = true` adds scale-aware
merging (FIB_TOL_SCALED; fibers of dense groups).
"""
function color(g::Graph; symmetry::Symbol = :fibers, eps::Real = 0.0,
               tolerance::Symbol = :auto, scaled::Bool = false, n_threads::Integer = 0)
    opts = _color_options(symmetry, tolerance, eps, scaled, n_threads)
    out = Ref{Ptr{fib_coloring}}(C_NULL)
    check(fib_color(_ptr(g), opts, out))
    return Coloring(out[], g)
end

"""
    color_nested(g, eps; symmetry=:fibers, tolerance=:abs, scaled=false, n_threads=0)

Colourings at the tolerances `eps` (ascending) made to nest
(fib_color_nested): level t is the colouring at `eps[t]` joined with level
t - 1, so a class never splits as eps grows. One `Coloring` per level.
"""
function color_nested(g::Graph, eps::AbstractVector{<:Real}; symmetry::Symbol = :fibers,
                      tolerance::Symbol = :abs, scaled::Bool = false, n_threads::Integer = 0)
    opts = _color_options(symmetry, tolerance, 0.0, scaled, n_threads)
    levels = fill(Ptr{fib_coloring}(C_NULL), length(eps))
    check(fib_color_nested(_ptr(g), opts, Float64.(eps), Int32(length(eps)), levels))
    return [Coloring(p, g) for p in levels]
end

"A colouring where every unit is its own class (fill with `set_group!`)."
function coloring(g::Graph, symmetry::Symbol = :fibers)
    out = Ref{Ptr{fib_coloring}}(C_NULL)
    check(fib_coloring_create(_ptr(g), SYMMETRIES[symmetry], out))
    return Coloring(out[], g)
end

function num_classes(c::Coloring, group::Integer)
    n = Ref{Int64}(0)
    check(fib_coloring_num_classes(_ptr(c), cgroup(group), n))
    return Int(n[])
end

"The class (1-based) of every unit of a group."
function colors(c::Coloring, group::Integer)
    n = group_info(c.graph, group).n_units
    out = zeros(Int64, n)
    check(fib_coloring_colors(_ptr(c), cgroup(group), out, Int64(n)))
    return junits(out)
end

function class_sizes(c::Coloring, group::Integer)
    n = num_classes(c, group)
    out = zeros(Int64, n)
    check(fib_coloring_class_sizes(_ptr(c), cgroup(group), out, Int64(n)))
    return Int.(out)
end

"Replaces a group's partition; labels are any integers (renumbered canonically)."
function set_group!(c::Coloring, group::Integer, labels::AbstractVector{<:Integer})
    v = Int64.(labels)
    check(fib_coloring_set_group(_ptr(c), cgroup(group), v, Int64(length(v))))
end

function is_balanced(c::Coloring; eps::Real = 0.0)
    out = Ref{Int32}(0)
    check(fib_coloring_is_balanced(_ptr(c.graph), _ptr(c), Float64(eps), out))
    return out[] != 0
end

# -- base, lift, symmetry breaking ----------------------------------------------

function compress(g::Graph, c::Coloring)
    out = Ref{Ptr{fib_base}}(C_NULL)
    check(fib_compress(_ptr(g), _ptr(c), out))
    return FibrationBase(out[], g)
end

const BUDGET_TOLERANCES = Dict(:auto => Int32(0), :ward => FIB_TOL_WARD,
                               :scaled_ward => FIB_TOL_SCALED | FIB_TOL_WARD)

"""
    compress_to_budget(g, budget; merge_inputs=false, sensitivity_power=1.5,
                       input_sensitivity=3.0, synthetic_scale=0.0, synthetic_ridge=1e-3,
                       refine_iterations=20, tolerance=:auto, n_threads=0)

Compresses `g` (a chain of dense groups) to at most `budget` (0 < budget <= 1)
of its parameters, choosing the grouping and every hidden group's class count
itself, data-free (fib_compress_to_budget_ex). `tolerance` is `:auto`, `:ward`
or `:scaled_ward`. With `merge_inputs = true` the inputs are merged too (by
the columns of the first block): the base then reads the mean of each input
class, and `projection(base, input_group)` gives the classes. With
`synthetic_scale > 0` (the inputs' typical standard deviation) the merged
layers are corrected without data, by least squares on synthetic Gaussian
inputs, each fit pulled towards the re-derived representatives' consumer
by `synthetic_ridge` times its Gram matrix's mean diagonal (finite, >= 0;
0: plain least squares). Returns `(base, report)`, `report` a named tuple `(bound,
n_parameters, chosen_tolerance, corrected)`: the data-free first-order
bound, the base's parameters plus one per input when inputs were merged,
the grouping used (`:ward` or `:scaled_ward`) and whether the correction
was applied. The base is deterministic.
"""
function compress_to_budget(g::Graph, budget::Real; merge_inputs::Bool = false,
                            sensitivity_power::Real = 1.5, input_sensitivity::Real = 3.0,
                            synthetic_scale::Real = 0.0, synthetic_ridge::Real = 1e-3,
                            refine_iterations::Integer = 20, tolerance::Symbol = :auto,
                            n_threads::Integer = 0)
    haskey(BUDGET_TOLERANCES, tolerance) ||
        throw(ArgumentError("tolerance must be :auto, :ward or :scaled_ward, not :$tolerance"))
    opts = Ref(fib_budget_options())
    check(fib_budget_options_init(opts, Csize_t(sizeof(fib_budget_options))))
    opts[] = _with(opts[]; tolerance = BUDGET_TOLERANCES[tolerance], n_threads = n_threads,
                   sensitivity_power = Float64(sensitivity_power),
                   refine_iterations = refine_iterations, merge_inputs = Int32(merge_inputs),
                   input_sensitivity = Float64(input_sensitivity),
                   synthetic_scale = Float64(synthetic_scale),
                   synthetic_ridge = Float64(synthetic_ridge))
    made = Ref(_with(fib_budget_result(); struct_size = sizeof(fib_budget_result)))
    out = Ref{Ptr{fib_base}}(C_NULL)
    check(fib_compress_to_budget_ex(_ptr(g), Float64(budget), opts, made, out))
    base = FibrationBase(out[], g)
    r = made[]
    chosen = :unknown
    for (k, v) in BUDGET_TOLERANCES
        v == r.chosen_tolerance && (chosen = k)
    end
    return base, (bound = r.bound, n_parameters = Int(r.n_parameters), chosen_tolerance = chosen,
                  corrected = r.corrected != 0)
end

"The base network; it keeps the base alive and is freed with it."
base_graph(b::FibrationBase) = Graph(Ptr{fib_graph}(fib_base_graph(_ptr(b))), b)

"""
    original_units(b, group)

The number of units of `group` of the original graph (a base read by
`load_base` knows it from its file).
"""
function original_units(b::FibrationBase, group::Integer)
    n = Ref{Int64}(0)
    check(fib_base_original_units(_ptr(b), cgroup(group), n))
    return Int(n[])
end

"For each unit of `group` of the original, its base unit (1-based)."
function projection(b::FibrationBase, group::Integer)
    n = original_units(b, group)
    out = zeros(Int64, n)
    check(fib_base_projection(_ptr(b), cgroup(group), out, Int64(n)))
    return junits(out)
end

"""
    lift(b, weights=nothing; dtype=nothing)

The base (or `weights`, a graph shaped like the base graph) lifted back to
the original's shape: a new Graph (fib_lift_dtype). `dtype` of the lifted
dense blocks: `nothing` (each in the precision of the block it lifts),
`Float32` (each rounded as it is made: the lift never holds Float64 copies
of them all) or `Float64` (unrounded).
"""
function lift(b::FibrationBase, weights::Union{Graph,Nothing} = nothing;
              dtype::Union{Type{Float32},Type{Float64},Nothing} = nothing)
    out = Ref{Ptr{fib_graph}}(C_NULL)
    check(fib_lift_dtype(_ptr(b), weights === nothing ? C_NULL : _ptr(weights),
                         dtype === nothing ? Int32(0) : dtype_code(dtype), out))
    return Graph(out[])
end

function break_symmetry(g::Graph; coloring::Union{Coloring,Nothing} = nothing, seed::Integer = 0)
    out = Ref{Ptr{fib_graph}}(C_NULL)
    check(fib_break_symmetry(_ptr(g), coloring === nothing ? C_NULL : _ptr(coloring),
                             UInt64(seed), out))
    return Graph(out[])
end

include("base_files.jl")

end # module
