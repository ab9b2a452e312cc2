# The Fibration test suite: run with
#   FIBRATION_LIBRARY=/path/to/libfibration.so julia --project=bindings/julia/Fibration -e 'using Pkg; Pkg.test()'
using Fibration
using Test

# 2 inputs -> 4 hidden units in 2 planted classes -> 1 output
function planted()
    g = Graph()
    x = add_input!(g, 2)
    W = [0.5 -1.0; 2.0 0.25; 0.5 -1.0; 2.0 0.25]
    h = add_dense!(g, x, W; bias = [0.1, 0.2, 0.1, 0.2], activation = :relu)
    add_dense!(g, h, [1.0 2.0 3.0 4.0])
    return g, x, h
end

# splitmix64, as in examples/planted.jl: doubles in [-1, 1)
mutable struct SplitMix64
    state::UInt64
end

function uniform(r::SplitMix64)
    r.state += 0x9E3779B97F4A7C15
    z = r.state
    z = (z ⊻ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ⊻ (z >> 27)) * 0x94D049BB133111EB
    z ⊻= z >> 31
    return Float64(z >> 11) * 2.0^-53 * 2.0 - 1.0
end

"rows x cols drawn in C's row-major order."
fill_matrix(r, rows, cols) = permutedims(reshape([uniform(r) for _ in 1:rows*cols], cols, rows))
fill_vector(r, n) = [uniform(r) for _ in 1:n]

@testset "Fibration" begin
    @testset "version" begin
        @test Fibration.library_version().major == Fibration.HEADER_VERSION.major
        @test length(Fibration.FUNCTION_NAMES) >= 39
    end

    @testset "1-based groups and classes" begin
        g, x, h = planted()
        @test (x, h) == (1, 2)
        @test num_groups(g) == 3
        info = group_info(g, h)
        @test info.op == :dense && info.n_units == 4 && info.activation == :relu
        @test info.sources == [1]
        fibers = color(g)
        @test num_classes(fibers, h) == 2
        @test colors(fibers, h) == [1, 2, 1, 2]
        @test class_sizes(fibers, h) == [2, 2]
        @test is_balanced(fibers)
    end

    @testset "row-major weights round-trip" begin
        g, x, h = planted()
        W, b = read_dense(g, h)
        @test W == [0.5 -1.0; 2.0 0.25; 0.5 -1.0; 2.0 0.25]
        @test b == [0.1, 0.2, 0.1, 0.2]
        # a transpose of a Matrix passes without copying
        g2 = Graph(); x2 = add_input!(g2, 2)
        h2 = add_dense!(g2, x2, transpose([1.0 3.0; 2.0 4.0]))
        @test read_dense(g2, h2)[1] == [1.0 2.0; 3.0 4.0]
    end

    @testset "compress, forward, lift" begin
        g, x, h = planted()
        base = compress(g, color(g))
        bg = base_graph(base)
        @test group_info(bg, h).n_units == 2
        @test projection(base, h) == [1, 2, 1, 2]
        X = [0.3 1.5; -0.7 2.0]                     # 2 inputs x batch 2
        @test isapprox(forward(g, X), forward(bg, X); atol = 1e-12)
        @test isapprox(forward(lift(base), X), forward(g, X); atol = 1e-12)
        @test isapprox(forward(break_symmetry(g; seed = 3), X), forward(g, X); atol = 1e-12)
        @test size(forward(g, Float32.(X))) == (1, 2)
    end

    @testset "errors and close" begin
        g = Graph()
        err = try
            add_dense!(g, 8, ones(1, 1)); nothing
        catch e
            e
        end
        @test err isa FibrationError
        @test err.code == Fibration.FIB_E_RANGE && err.name == "FIB_E_RANGE"
        close(g); close(g)                           # idempotent
        @test_throws ArgumentError num_groups(g)
    end

    @testset "tolerance modes and nested levels" begin
        g = Graph()
        x = add_input!(g, 2)
        h = add_dense!(g, x, [1.0 0.0; 1.05 0.0; 0.0 1.0; 0.0 1.5]; activation = :relu)
        add_dense!(g, h, [1.0 1.0 1.0 1.0])
        levels = color_nested(g, [0.01, 0.1, 1.0])
        counts = [num_classes(c, h) for c in levels]
        @test counts[1] == 4 && counts[2] == 3 && issorted(counts; rev = true)
        for t in 1:2
            fine, coarse = colors(levels[t], h), colors(levels[t + 1], h)
            @test all(fine[i] != fine[j] || coarse[i] == coarse[j] for i in 1:4, j in 1:4)
        end
        # unit 2 is unit 1 scaled by 2 with its outgoing weight halved
        s = Graph()
        xs = add_input!(s, 2)
        hs = add_dense!(s, xs, [1.0 2.0; 2.0 4.0]; activation = :relu)
        add_dense!(s, hs, [2.0 1.0])
        @test num_classes(color(s), hs) == 2
        c = color(s; tolerance = :complete, eps = 1e-9, scaled = true)
        @test num_classes(c, hs) == 1
        X = reshape([0.3, 0.9], 2, 1)
        @test isapprox(forward(s, X), forward(base_graph(compress(s, c)), X); atol = 1e-12)
    end

    @testset "compress_to_budget merges planted input classes" begin
        # the network of the Rust test budget_merges_planted_input_classes:
        # 24 inputs in 6 classes (equal columns of the first block), 16 ReLU, 3
        n_in, k_in, n_h, n_out, batch = 24, 6, 16, 3, 8
        cls = [(k * 5 + k ÷ 7) % k_in + 1 for k in 0:n_in-1]
        rng = SplitMix64(3)
        R = fill_matrix(rng, n_h, k_in)
        b1 = fill_vector(rng, n_h)
        W2, b2 = fill_matrix(rng, n_out, n_h), fill_vector(rng, n_out)
        g = Graph()
        x = add_input!(g, n_in)
        h = add_dense!(g, x, R[:, cls]; bias = b1, activation = :relu)
        add_dense!(g, h, W2; bias = b2)
        total = num_parameters(g)
        own = k_in * n_h + n_h + n_h * n_out + n_out + n_in
        base, report = compress_to_budget(g, own / total; merge_inputs = true)
        bg = base_graph(base)
        @test group_info(bg, x).n_units == k_in
        # merged inputs count one parameter each (their class index)
        @test report.n_parameters == num_parameters(bg) + n_in
        @test report.n_parameters <= own
        @test report.chosen_tolerance == :scaled_ward
        p = projection(base, x)
        @test sort(unique(p)) == collect(1:k_in)
        @test all((p[a] == p[c]) == (cls[a] == cls[c]) for a in 1:n_in, c in 1:n_in)
        # the base fed the class means gives the original's outputs
        X = reshape(fill_vector(rng, n_in * batch), n_in, batch)
        counts = [count(==(c), p) for c in 1:k_in]
        M = [sum(X[k, s] for k in 1:n_in if p[k] == c) / counts[c] for c in 1:k_in, s in 1:batch]
        @test maximum(abs.(forward(bg, M) .- forward(g, X))) <= 1e-12
        # without the option the inputs stay; a budget outside (0, 1] fails
        plain, _ = compress_to_budget(g, 0.9)
        @test group_info(base_graph(plain), x).n_units == n_in
        for bad in (0.0, 1.5)
            err = try
                compress_to_budget(g, bad); nothing
            catch e
                e
            end
            @test err isa FibrationError && err.code == Fibration.FIB_E_INVALID
        end
        @test_throws ArgumentError compress_to_budget(g, 0.5; tolerance = :exact)
    end

    include("base_files.jl")

    @testset "create/free cycles" begin
        for _ in 1:2000
            g, x, h = planted()
            c = color(g)
            b = compress(g, c)
            close(b); close(c); close(g)
        end
        GC.gc()
        @test true
    end
end
