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
