# planted.jl — colour a planted MLP, compress it, check the base.
#
# The Julia twin of bindings/examples/planted.c: the same generator and
# network, and the same printed text.
#
#   FIBRATION_LIBRARY=build/src/libfibration.so \
#       julia --project=bindings/julia/Fibration bindings/julia/Fibration/examples/planted.jl
#
# Julia conventions (src/convert.jl): W is n_out x n_in, batches are
# n_features x batch, group ids and classes are 1-based, so the printed
# classes are shifted back by one to match the C output.

using Fibration
using Printf

mutable struct SplitMix64
    state::UInt64
end

"The next double in [-1, 1)."
function uniform(r::SplitMix64)
    r.state += 0x9E3779B97F4A7C15
    z = r.state
    z = (z ⊻ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ⊻ (z >> 27)) * 0x94D049BB133111EB
    z ⊻= z >> 31
    return Float64(z >> 11) * 2.0^-53 * 2.0 - 1.0
end

"n values in C order, as a rows x cols matrix (row-major draw order)."
fill_matrix(r, rows, cols) = permutedims(reshape([uniform(r) for _ in 1:rows*cols], cols, rows))
fill_vector(r, n) = [uniform(r) for _ in 1:n]

const N_IN, B1, B2, N_OUT, H1, H2, BATCH = 4, 3, 2, 2, 6, 6, 3

function main()
    rng = SplitMix64(42)
    wb1, bb1 = fill_matrix(rng, B1, N_IN), fill_vector(rng, B1)
    wb2, bb2 = fill_matrix(rng, B2, B1), fill_vector(rng, B2)
    wb3, bb3 = fill_matrix(rng, N_OUT, B2), fill_vector(rng, N_OUT)

    # the lift: unit i of a hidden layer copies base unit i % width (0-based)
    p1 = [(i - 1) % B1 + 1 for i in 1:H1]
    p2 = [(i - 1) % B2 + 1 for i in 1:H2]
    w1, b1 = wb1[p1, :], bb1[p1]
    w2, b2 = wb2[p2, p1] ./ (H1 ÷ B1), bb2[p2]
    w3 = wb3[:, p2] ./ (H2 ÷ B2)

    g = Graph()
    x = add_input!(g, N_IN)
    h1 = add_dense!(g, x, w1; bias = b1, activation = :relu)
    h2 = add_dense!(g, h1, w2; bias = b2, activation = :tanh)
    add_dense!(g, h2, w3; bias = bb3)

    fibers = color(g)
    println("groups: ", num_groups(g))
    println("fibers per group:", join([" $(num_classes(fibers, k))" for k in 1:num_groups(g)]))
    println("classes of h1:", join([" $(c - 1)" for c in colors(fibers, h1)]))
    balanced = is_balanced(fibers)
    println("balanced: ", Int(balanced))

    base = compress(g, fibers)
    bg = base_graph(base)
    println("parameters: ", num_parameters(g), " => ", num_parameters(bg))

    inputs = fill_matrix(rng, BATCH, N_IN)      # drawn row by row, like C
    X = permutedims(inputs)                     # n_in x batch
    out, out_base = forward(g, X), forward(bg, X)
    for r in 1:BATCH
        println("output $(r - 1):", join([@sprintf(" %.6f", v) for v in out_base[:, r]]))
    end
    same = maximum(abs.(out .- out_base)) <= 1e-12
    println("base equals original: ", same ? "yes" : "no")
    close(base); close(fibers); close(g)
    return same && balanced ? 0 : 1
end

exit(main())
