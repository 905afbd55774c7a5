#pragma once
// The tree of the Unbalanced Tree Search benchmark (Olivier, Huan, Liu, Prins, Dinan, Sadayappan,
// Tseng: "UTS: An Unbalanced Tree Search Benchmark", LCPC 2006). A node's child count is drawn
// from its own random state, and a child's state is SHA-1(parent's state, child index): the
// generator is split, never shared, so every run and every schedule builds the same tree, yet
// nobody can tell a subtree's size before visiting it — the point of the benchmark.
//
// Two of the sample trees are here: the geometric tree with the "fixed" shape function (T1), the
// benchmarks' workload, and the binomial tree (T3), whose depth of 1,572 makes it the test of
// deep recursion:
//
//   T1 = uts -t 1 -a 3 -d 10 -b 4 -r 19: 4,130,071 nodes, 3,305,118 leaves, depth 10
//   T3 = uts -t 0 -b 2000 -q 0.124875 -m 8 -r 42: 4,112,897 nodes, 3,599,034 leaves, depth 1,572
//
// The generator (rng_init, rng_spawn, rng_rand, rng_toProb) and the child counts
// (uts_numChildren_geo, uts_numChildren_bin and uts_numChildren's caps) reproduce the reference
// implementation's arithmetic exactly; otherwise the published node counts would not come out.

#include <array>    // for std::array
#include <cmath>    // for std::floor, std::log
#include <cstdint>  // for std::int32_t, std::int64_t, std::uint8_t, std::uint32_t

#include "sha1.hpp"

namespace tidepool::perf::uts {

struct node {
  sha1_digest state;
  int depth;  // the root's is 0
};

// rng_init: 16 zero bytes and the seed's 4 bytes big-endian, hashed.
inline node root(std::int32_t seed) noexcept {
  std::array<std::uint8_t, 20> seed_block{};
  const auto bits = static_cast<std::uint32_t>(seed);
  for (int i = 0; i < 4; ++i) seed_block[16 + i] = static_cast<std::uint8_t>(bits >> (24 - 8 * i));
  return {sha1().update(seed_block).finish(), 0};
}

// rng_spawn: the parent's 20 state bytes then the child's index, 4 bytes big-endian, hashed.
inline node child(const node& parent, std::int32_t index) noexcept {
  std::array<std::uint8_t, 4> index_bytes;
  const auto bits = static_cast<std::uint32_t>(index);
  for (int i = 0; i < 4; ++i) index_bytes[i] = static_cast<std::uint8_t>(bits >> (24 - 8 * i));
  return {sha1().update(parent.state).update(index_bytes).finish(), parent.depth + 1};
}

// rng_rand then rng_toProb: the state's last 4 bytes, big-endian, top bit cleared, over 2^31.
inline double uniform_of(const node& n) noexcept {
  const std::uint32_t bits = std::uint32_t{n.state[16]} << 24 | std::uint32_t{n.state[17]} << 16 |
                             std::uint32_t{n.state[18]} << 8 | std::uint32_t{n.state[19]};
  return static_cast<double>(bits & 0x7fff'ffffU) / 2147483648.0;
}

struct geometric_fixed_tree {
  std::int32_t root_seed;  // -r
  int depth_limit;         // -d (gen_mx): nodes at this depth have no children
  double branching;        // -b (b_0): the expected child count of every node above the limit
};

inline constexpr geometric_fixed_tree t1{19, 10, 4.0};

inline constexpr int max_children = 100;  // MAXNUMCHILDREN; T1 never reaches it

// uts_numChildren_geo with the FIXED shape function, capped like uts_numChildren.
inline int child_count(const geometric_fixed_tree& tree, const node& n) noexcept {
  // The reference lets log(1 - 1) = -inf turn the count into 0 below the limit; same result.
  if (n.depth >= tree.depth_limit) return 0;
  // The geometric distribution whose mean is `branching`, sampled by inverting its CDF.
  const double p = 1.0 / (1.0 + tree.branching);
  const double u = uniform_of(n);
  const int count = static_cast<int>(std::floor(std::log(1.0 - u) / std::log(1.0 - p)));
  return count < max_children ? count : max_children;
}

// A binomial tree: the root has `root_children` children; every other node has
// `non_leaf_children` with probability `non_leaf_probability`, else none. With q·m just under 1
// the tree is nearly critical: few nodes, long chains.
struct binomial_tree {
  std::int32_t root_seed;       // -r
  double root_children;         // -b (b_0)
  double non_leaf_probability;  // -q
  int non_leaf_children;        // -m
};

inline constexpr binomial_tree t3{42, 2000.0, 0.124875, 8};

// uts_numChildren_bin below the root, floor(b_0) at it (uts_numChildren caps the root at
// ceil(b_0), which floor never exceeds, and the others at max_children).
inline int child_count(const binomial_tree& tree, const node& n) noexcept {
  if (n.depth == 0) return static_cast<int>(std::floor(tree.root_children));
  const int count = uniform_of(n) < tree.non_leaf_probability ? tree.non_leaf_children : 0;
  return count < max_children ? count : max_children;
}

// No default values: a fork-join node keeps an array of max_children of these for its children's
// answers, and filling 2.4 KB per node would cost more than the hashing.
struct tree_size {
  std::int64_t nodes;
  std::int64_t leaves;
  int depth;  // of the deepest node

  static tree_size of_node(const node& n, int children) noexcept { return {1, children == 0 ? 1 : 0, n.depth}; }
  friend tree_size operator+(const tree_size& a, const tree_size& b) noexcept {
    return {a.nodes + b.nodes, a.leaves + b.leaves, a.depth > b.depth ? a.depth : b.depth};
  }
  friend bool operator==(const tree_size&, const tree_size&) = default;
};

inline constexpr tree_size t1_size{4'130'071, 3'305'118, 10};
inline constexpr tree_size t3_size{4'112'897, 3'599'034, 1'572};

template <class Tree>
tree_size count_serial(const Tree& tree, const node& n) noexcept {
  const int children = child_count(tree, n);
  tree_size size = tree_size::of_node(n, children);
  for (int i = 0; i < children; ++i) size = size + count_serial(tree, child(n, i));
  return size;
}

}  // namespace tidepool::perf::uts
