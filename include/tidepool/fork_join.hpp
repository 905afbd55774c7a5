#pragma once
// Fork-join on a tidepool::pool: parallel_invoke, parallel_for, parallel_reduce.
//
//   tidepool::parallel_invoke(pool, [&] { a = fib(n - 1); }, [&] { b = fib(n - 2); });
//   tidepool::parallel_for(pool, 0, n, [&](int i) { out[i] = f(in[i]); });
//   long sum = tidepool::parallel_reduce(pool, 0, n, 0L, [&](int i) { return v[i]; }, std::plus<>());
//   tidepool::parallel_for(pool, 0, n, f, tidepool::static_partitioner{});  // partitioner.hpp
//
// Called from one of the pool's workers (inside a task), the caller takes part: parallel_invoke
// puts the second function on its own deque, where an idle worker may steal it, runs the first
// itself, then takes the second back if nobody stole it. The spawned job lives on the caller's
// stack, so the two-way case allocates nothing (Rayon's `join` design). While a stolen half is
// still running the caller helps: it runs other tasks of the pool instead of blocking, so
// recursion never deadlocks and never idles a worker. Called from any other thread, the whole
// call is submitted to the pool as one task and the caller blocks until it is done.
//
// Exceptions: every function still runs to completion (or to its own exception); then the
// exception of the earliest argument that threw is rethrown to the caller.
//
// What else may run on the caller's stack: tasks a task_group submits inside the first function
// and does not wait for (they sit above the job on the deque), and, while a stolen half is still
// running, whatever a helping wait runs (task.hpp). Do not make such tasks wait for something the
// caller does only after parallel_invoke returns.

// Fork-join jobs are not "tasks" in the pool's metrics (they are not submitted, cannot be
// refused or cancelled); the tasks that call them are.

#include <concepts>     // for std::integral, std::same_as
#include <cstddef>      // for std::size_t
#include <cstdint>      // for SIZE_MAX
#include <exception>    // for std::exception_ptr, std::rethrow_exception
#include <functional>   // for std::invoke
#include <optional>     // for std::optional
#include <type_traits>  // for std::remove_reference_t, std::make_unsigned_t, std::common_type_t, std::conditional_t,
                        // std::is_trivially_copy_constructible_v, std::is_trivially_destructible_v
#include <utility>      // for std::move, std::forward, std::pair

#include "tidepool/detail/task_node.hpp"
#include "tidepool/partitioner.hpp"
#include "tidepool/pool.hpp"

namespace tidepool {

namespace detail {

struct worker;
worker* worker_of(pool& p) noexcept;                  // this thread's worker, if it is one of p's
bool spawn(worker& w, task_node* job) noexcept;      // onto w's deque; false if it is full
bool take_back(worker& w, task_node* job) noexcept;  // true: not stolen, run it here
bool has_local_work(worker& w) noexcept;             // w's deque is not empty
void wait_for_task(task_node* node);                 // helps while waiting (lib/waiting.cpp)

// A spawned half of parallel_invoke: a task node on the spawner's stack that refers to the
// function, which stays where it is (the spawner's frame outlives the job).
template <class F>
class fork_join_job {
 public:
  explicit fork_join_job(F& f) noexcept {
    node_.ops = &job_ops;
    node_.kind = task_kind::fork_join_job;
    construct_stored<F*>(&node_, &f);
  }
  ~fork_join_job() {
    if (node_.has_error()) static_cast<void>(node_.take_error());  // the caller rethrew another one
  }
  fork_join_job(const fork_join_job&) = delete;
  fork_join_job& operator=(const fork_join_job&) = delete;

  [[nodiscard]] task_node* node() noexcept { return &node_; }
  void run_here() noexcept { job_ops(&node_, task_op::run); }
  [[nodiscard]] std::exception_ptr error() noexcept { return node_.has_error() ? node_.take_error() : nullptr; }

 private:
  static void job_ops(task_node* n, task_op op) noexcept {
    if (op != task_op::run) return;
    try {
      std::invoke(*stored<F*>(n));
    } catch (...) {
      n->store_error(std::current_exception());
    }
  }
  task_node_storage<node_bytes(node_size::tiny)> node_;  // flags 0: tiny
};

}  // namespace detail

template <class F1, class F2>
void parallel_invoke(pool& p, F1&& first, F2&& second) {
  detail::worker* w = detail::worker_of(p);
  if (w == nullptr) {
    p.submit([&] { parallel_invoke(p, first, second); }).get();
    return;
  }
  detail::fork_join_job<std::remove_reference_t<F2>> job(second);
  if (!detail::spawn(*w, job.node())) {  // deque full: there is plenty to steal already
    std::invoke(first);
    std::invoke(second);
    return;
  }
  std::exception_ptr first_error;
  try {
    std::invoke(first);
  } catch (...) {
    first_error = std::current_exception();
  }
  if (detail::take_back(*w, job.node())) {
    job.run_here();
  } else {
    detail::wait_for_task(job.node());  // stolen: help until the thief is done with it
  }
  if (first_error) std::rethrow_exception(first_error);
  if (std::exception_ptr error = job.error()) std::rethrow_exception(error);
}

template <class F1, class F2, class F3, class... Fs>
void parallel_invoke(pool& p, F1&& first, F2&& second, F3&& third, Fs&&... rest) {
  parallel_invoke(p, first, [&] { parallel_invoke(p, second, third, rest...); });
}


namespace detail {

// --- Dividing a range among the workers, for each partitioner (partitioner.hpp).
//
// A Range (index_span below, blocked_range2d in blocked_range2d.hpp) offers: size() (how many
// indices, saturated), divisible(grain), split() into two halves, split_at(num, den) (the first
// num/den of it, and the rest; both non-empty when size() >= den), and peel(grain) (a front piece
// of about `grain` indices, and the rest). A Body offers T leaf(const Range&) for a non-empty
// range and T join(T left, T right), combining in index order. parallel_for's T is no_value.

struct no_value {};

template <class Range>
std::size_t pieces_for(const Range& r, std::size_t pieces) {
  const std::size_t n = r.size();
  return pieces < n ? (pieces > 0 ? pieces : 1) : n;
}

// left() and right() in parallel, their results joined in index order.
template <class T, class Body, class Left, class Right>
T fork_and_join(pool& p, Body& body, Left left, Right right) {
  std::optional<T> left_result;
  std::optional<T> right_result;
  parallel_invoke(p, [&] { left_result.emplace(left()); }, [&] { right_result.emplace(right()); });
  return body.join(std::move(*left_result), std::move(*right_result));
}

// Lazy binary splitting (Tzannes, Caragea, Barua, Vishkin, PPoPP 2010): split a range in two
// only while this worker's deque is empty, i.e. while no half it offered earlier is still
// waiting for a thief. Otherwise do one grain of work and look again. Splitting thus follows
// demand instead of a fixed depth.
template <class T, class Range, class Body>
T divide_lazily(pool& p, Range r, Body& body, std::size_t grain) {
  std::optional<T> folded;  // of the pieces already run here, in index order
  auto absorb = [&](T piece) {
    if (folded) {
      folded.emplace(body.join(std::move(*folded), std::move(piece)));
    } else {
      folded.emplace(std::move(piece));
    }
  };
  while (r.divisible(grain)) {
    worker* w = worker_of(p);
    if (w != nullptr && has_local_work(*w)) {
      auto [front, rest] = r.peel(grain);
      absorb(body.leaf(front));
      r = rest;
      continue;
    }
    const auto halves = r.split();
    absorb(fork_and_join<T>(
        p, body, [&] { return divide_lazily<T>(p, halves.first, body, grain); },
        [&] { return divide_lazily<T>(p, halves.second, body, grain); }));
    return std::move(*folded);
  }
  absorb(body.leaf(r));
  return std::move(*folded);
}

// `chunks` pieces of equal size (the first ones one index larger when it does not divide),
// forked as a balanced tree: a piece's bounds depend only on its number, never on timing.
template <class T, class Range, class Body>
T divide_evenly(pool& p, Range r, Body& body, std::size_t chunks) {
  chunks = pieces_for(r, chunks);  // a two-dimensional split_at may leave a part fewer indices
  if (chunks <= 1) return body.leaf(r);
  const std::size_t left_chunks = chunks / 2;
  const auto parts = r.split_at(left_chunks, chunks);
  return fork_and_join<T>(
      p, body, [&] { return divide_evenly<T>(p, parts.first, body, left_chunks); },
      [&] { return divide_evenly<T>(p, parts.second, body, chunks - left_chunks); });
}

template <class T, class Range, class Body>
T divide_down_to(pool& p, Range r, Body& body, std::size_t grain) {
  if (!r.divisible(grain)) return body.leaf(r);
  const auto halves = r.split();
  return fork_and_join<T>(
      p, body, [&] { return divide_down_to<T>(p, halves.first, body, grain); },
      [&] { return divide_down_to<T>(p, halves.second, body, grain); });
}

// The range `r` (non-empty) divided as `part` says, on p's workers. From outside the pool, the
// whole call is one task and the caller blocks until it is done.
template <class T, class Range, class Body, class Partitioner>
T divide(pool& p, const Range& r, Body& body, const Partitioner& part) {
  constexpr std::size_t max_chunks = std::size_t{1} << 31;  // keeps split_at's arithmetic in range
  auto run = [&]() -> T {
    if constexpr (std::is_same_v<Partitioner, static_partitioner>) {
      const std::size_t wanted = part.chunks != 0 ? part.chunks : 4 * p.workers();
      return divide_evenly<T>(p, r, body, pieces_for(r, wanted < max_chunks ? wanted : max_chunks));
    } else if constexpr (std::is_same_v<Partitioner, simple_partitioner>) {
      return divide_down_to<T>(p, r, body, part.grain > 0 ? part.grain : 1);
    } else {
      // About 8 pieces per worker if nobody steals: small enough to balance, large enough that
      // the per-piece cost vanishes. Lazy splitting adapts from there.
      const std::size_t grain = part.grain != 0 ? part.grain : r.size() / (8 * p.workers());
      return divide_lazily<T>(p, r, body, grain > 0 ? grain : 1);
    }
  };
  if (worker_of(p) == nullptr) return p.submit(run).get();
  return run();
}

// --- One-dimensional index ranges of any integer type.
//
// Indices are handled as offsets from `first` in an unsigned type at least as wide as Index (and
// as std::size_t): the length last - first of any range Index can express fits there, with no
// overflow, and the index at offset k is first + k computed modulo 2^width and converted back,
// which C++20 defines for signed types too.

template <class Index>
concept loop_index = std::integral<Index> && !std::same_as<std::remove_cv_t<Index>, bool>;

template <loop_index Index>
using index_offset = std::common_type_t<std::make_unsigned_t<Index>, std::size_t>;

template <loop_index Index>
[[nodiscard]] constexpr index_offset<Index> distance(Index first, Index last) noexcept {
  using unsigned_index = std::make_unsigned_t<Index>;
  // The cast back to unsigned_index undoes integer promotion for types narrower than int.
  return static_cast<unsigned_index>(static_cast<unsigned_index>(last) - static_cast<unsigned_index>(first));
}

template <loop_index Index>
[[nodiscard]] constexpr Index advance(Index first, index_offset<Index> k) noexcept {
  using unsigned_index = std::make_unsigned_t<Index>;
  return static_cast<Index>(static_cast<unsigned_index>(static_cast<unsigned_index>(first) + static_cast<unsigned_index>(k)));
}

// [first + lo, first + hi).
template <loop_index Index>
struct index_span {
  using offset = index_offset<Index>;
  Index first;
  offset lo;
  offset hi;

  [[nodiscard]] std::size_t size() const noexcept {
    const offset n = hi - lo;
    return n < static_cast<offset>(SIZE_MAX) ? static_cast<std::size_t>(n) : SIZE_MAX;
  }
  [[nodiscard]] bool divisible(std::size_t grain) const noexcept { return hi - lo > grain; }
  [[nodiscard]] std::pair<index_span, index_span> split_at(offset num, offset den) const noexcept {
    // lo + n * num / den, without forming n * num (den <= 2^31, so (n % den) * num fits).
    const offset n = hi - lo;
    const offset middle = lo + n / den * num + n % den * num / den;
    return {{first, lo, middle}, {first, middle, hi}};
  }
  [[nodiscard]] std::pair<index_span, index_span> split() const noexcept { return split_at(1, 2); }
  [[nodiscard]] std::pair<index_span, index_span> peel(std::size_t grain) const noexcept {
    const offset middle = lo + grain;
    return {{first, lo, middle}, {first, middle, hi}};
  }
  [[nodiscard]] Index begin_index() const noexcept { return advance(first, lo); }
  [[nodiscard]] Index end_index() const noexcept { return advance(first, hi); }
};

// How a leaf's loop holds the user's callable: a copy in the loop's own frame when copying is
// trivial and small, else a reference to the caller's object. A store in the body through a
// char (or another type that may alias the callable) forces the compiler to reload every capture
// from an object it cannot see on each iteration, and such a loop is never vectorised; in a copy
// whose address never escapes the leaf, the captures stay in registers. oneTBB copies its bodies
// too; a callable that counts on being called as one object is racy under parallel_for anyway.
template <class F>
using leaf_callable = std::conditional_t<std::is_trivially_copy_constructible_v<F> && std::is_trivially_destructible_v<F> && sizeof(F) <= 8 * sizeof(void*),
                                         std::remove_const_t<F>, F&>;

template <class Index, class F>
struct for_body {
  F& f;
  no_value leaf(const index_span<Index>& r) {
    // i < stop, not a count: the loop the compiler vectorises. stop is at most `last`, so ++i
    // never leaves the range Index can express.
    // Locals, not members (leaf_callable above says why).
    leaf_callable<F> call = f;
    const Index stop = r.end_index();
    for (Index i = r.begin_index(); i < stop; ++i) call(i);
    return {};
  }
  static no_value join(no_value, no_value) noexcept { return {}; }
};

template <class T, class Index, class Map, class Combine>
struct reduce_body {
  Map& map;
  Combine& combine;
  T leaf(const index_span<Index>& r) {
    leaf_callable<Map> map_one = map;  // locals, as in for_body
    leaf_callable<Combine> combine_two = combine;
    const Index stop = r.end_index();
    Index i = r.begin_index();
    T folded = map_one(i);
    for (++i; i < stop; ++i) folded = combine_two(std::move(folded), map_one(i));
    return folded;
  }
  T join(T left, T right) { return combine(std::move(left), std::move(right)); }
};

}  // namespace detail

// Calls f(i) for every i in [first, last), in parallel, the range cut as `part` says
// (partitioner.hpp). Index: any integer type; any range it can express works. f is called from
// several workers at once, and, when its copy is trivial, through copies (leaf_callable above):
// give it no state it changes.
template <detail::loop_index Index, class F, partitioner Partitioner = auto_partitioner>
void parallel_for(pool& p, Index first, Index last, F&& f, Partitioner part = {}) {
  if (!(first < last)) return;
  detail::for_body<Index, std::remove_reference_t<F>> body{f};
  detail::divide<detail::no_value>(p, detail::index_span<Index>{first, 0, detail::distance(first, last)}, body, part);
}

// `grain`: the most indices one piece runs without looking for a chance to split (0: chosen from
// the range and the worker count); the same as auto_partitioner{grain}.
template <detail::loop_index Index, class F>
void parallel_for(pool& p, Index first, Index last, F&& f, std::size_t grain) {
  parallel_for(p, first, last, std::forward<F>(f), auto_partitioner{grain});
}

// combine(init, combine(map(first), ..., map(last - 1))) with `combine` applied in index order
// (it must be associative; it need not be commutative).
template <detail::loop_index Index, class T, class Map, class Combine, partitioner Partitioner = auto_partitioner>
T parallel_reduce(pool& p, Index first, Index last, T init, Map&& map, Combine&& combine, Partitioner part = {}) {
  if (!(first < last)) return init;
  detail::reduce_body<T, Index, std::remove_reference_t<Map>, std::remove_reference_t<Combine>> body{map, combine};
  T all = detail::divide<T>(p, detail::index_span<Index>{first, 0, detail::distance(first, last)}, body, part);
  return combine(std::move(init), std::move(all));
}

template <detail::loop_index Index, class T, class Map, class Combine>
T parallel_reduce(pool& p, Index first, Index last, T init, Map&& map, Combine&& combine, std::size_t grain) {
  return parallel_reduce(p, first, last, std::move(init), std::forward<Map>(map), std::forward<Combine>(combine),
                         auto_partitioner{grain});
}

}  // namespace tidepool
