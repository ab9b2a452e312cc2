# Every conversion between Julia's conventions and C's, in one place.
#
#  - Indices. Julia is 1-based, C 0-based. Group ids, unit indices, class
#    labels and projections are 1-based in Julia: group 1 is the first group
#    created, class labels run 1..num_classes. `cgroup`/`jgroup` and
#    `junits`/`cunits` are the only places that add or subtract 1.
#  - Matrices. Julia is column-major, C reads row-major with a leading
#    dimension. A weight matrix is W (n_out x n_in), as in y = W * x: its
#    rows must be contiguous for C, which is the memory of W' in Julia, so
#    `rowmajor(W)` is `permutedims(W)` (or, zero-copy, the parent of a
#    `transpose(Wt)`). Batches are n_features x batch (a sample per column,
#    as in Flux): that memory is exactly C's row-major batch x n_features,
#    so inputs and outputs pass without copying or transposing.

cgroup(g::Integer) = Int32(g - 1)
jgroup(g::Integer) = Int(g) + 1

junits(v::AbstractVector{<:Integer}) = Int.(v) .+ 1
cunits(v::AbstractVector{<:Integer}) = Int64.(v) .- 1

"The memory of `W` (n_out x n_in) as C's row-major n_out x n_in block, ld = n_in."
rowmajor(W::AbstractMatrix{T}) where {T<:Union{Float32,Float64}} = permutedims(W)
rowmajor(W::LinearAlgebraTranspose) = W.parent
rowmajor(W::AbstractMatrix) = permutedims(Float64.(W))

"A Julia n_rows x n_cols matrix from C's row-major buffer `buf` (length n_rows * n_cols)."
from_rowmajor(buf::Vector, n_rows::Integer, n_cols::Integer) =
    permutedims(reshape(buf, Int(n_cols), Int(n_rows)))

dtype_code(::Type{Float32}) = FIB_DTYPE_F32
dtype_code(::Type{Float64}) = FIB_DTYPE_F64
