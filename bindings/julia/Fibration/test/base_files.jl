# Bases saved and loaded back (save_base, load_base, original_units) and
# lifts in a chosen dtype (lift(b; dtype)): the Julia twin of the Rust
# tests in bindings/rust/fibration/tests/base_files.rs (the same network).

# 6 inputs in 3 planted classes (equal columns of the first block) -> 6
# hidden ReLU units in 3 planted classes (equal rows) -> 2 outputs; the
# weights are decimals Float32 cannot hold
function planted6()
    row, column = [1.1, 0.6, -0.9], [0.1, -0.7, 0.3]
    W1 = [row[h % 3 + 1] * column[k % 3 + 1] + 0.01 * (h % 3) for h in 0:5, k in 0:5]
    b1 = [0.05 * (h % 3) + 0.1 for h in 0:5]
    W2 = [0.1 * ((o * 6 + h) % 7) - 0.3 for o in 0:1, h in 0:5]
    g = Graph()
    x = add_input!(g, 6)
    h = add_dense!(g, x, W1; bias = b1, activation = :relu)
    add_dense!(g, h, W2; bias = [0.2, -0.1])
    return g, x, h
end

inputs6(n, batch) = reshape([((i * 37 % 11) - 5) / 3 for i in 0:n*batch-1], n, batch)

"Every weight and bias of the dense groups of `g`, in group order."
function dense_weights(g::Graph)
    all = Float64[]
    for group in 1:num_groups(g)
        group_info(g, group).op == :dense || continue
        W, b = read_dense(g, group)
        append!(all, vec(permutedims(W)), b)
    end
    return all
end

holds_in_f32(v::Float64) = Float64(Float32(v)) == v

"Saves `base`, loads it back and checks it against `base` and `g`."
function check_round_trip(g::Graph, base::FibrationBase, path::AbstractString)
    save_base(base, path)
    loaded = load_base(path)
    @test loaded.original === nothing
    @test num_groups(base_graph(loaded)) == num_groups(base_graph(base))
    for group in 1:num_groups(g)
        n = group_info(g, group).n_units
        @test original_units(loaded, group) == n
        @test original_units(base, group) == n
        @test projection(loaded, group) == projection(base, group)
        @test group_info(base_graph(loaded), group).n_units ==
              group_info(base_graph(base), group).n_units
    end
    Xb = inputs6(io_width(base_graph(base))[1], 4)
    @test maximum(abs.(forward(base_graph(loaded), Xb) .- forward(base_graph(base), Xb))) <= 1e-12
    X = inputs6(6, 4)
    @test maximum(abs.(forward(lift(loaded), X) .- forward(lift(base), X))) <= 1e-12
    return loaded
end

@testset "bases saved and loaded back" begin
    mktempdir() do dir
        g, x, h = planted6()
        base = compress(g, color(g))
        @test group_info(base_graph(base), h).n_units == 3
        loaded = check_round_trip(g, base, joinpath(dir, "fibers.safetensors"))
        # the loaded base alone lifts to a network with the original's outputs
        X = inputs6(6, 4)
        @test maximum(abs.(forward(lift(loaded), X) .- forward(g, X))) <= 1e-12

        budget, _ = compress_to_budget(g, 0.6; merge_inputs = true)
        @test group_info(base_graph(budget), x).n_units < 6
        check_round_trip(g, budget, joinpath(dir, "budget.safetensors"))

        # saved as Float32: every weight rounded, the projection kept
        @test any(!holds_in_f32, dense_weights(base_graph(base)))
        path = joinpath(dir, "f32.safetensors")
        save_base(base, path; dtype = Float32)
        narrow = load_base(path)
        @test dense_weights(base_graph(narrow)) == Float64.(Float32.(dense_weights(base_graph(base))))
        @test projection(narrow, h) == projection(base, h)
        @test maximum(abs.(forward(lift(narrow), X) .- forward(g, X))) <= 1e-5

        err = try
            load_base(joinpath(dir, "missing.safetensors")); nothing
        catch e
            e
        end
        @test err isa FibrationError && err.code == Fibration.FIB_E_IO
        @test occursin("missing.safetensors", err.message)
    end
end

@testset "lift in a chosen dtype" begin
    g, x, h = planted6()
    base = compress(g, color(g))
    X = inputs6(6, 4)
    wide, narrow = lift(base; dtype = Float64), lift(base; dtype = Float32)
    w64, w32 = dense_weights(wide), dense_weights(narrow)
    @test length(w64) == length(w32)
    @test all(holds_in_f32, w32)                  # every lifted weight rounded
    @test any(!holds_in_f32, w64)                 # the Float64 lift is not
    @test w32 == Float64.(Float32.(w64))
    @test maximum(abs.(forward(wide, X) .- forward(g, X))) <= 1e-12
    @test maximum(abs.(forward(narrow, X) .- forward(g, X))) <= 1e-5
    # the default lift of a Float64 base is the Float64 one
    @test dense_weights(lift(base)) == w64
end
