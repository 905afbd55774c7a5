#pragma once
// Fork-join on a tidepool::pool: parallel_invoke, parallel_for, parallel_reduce.
//
//   tidepool::parallel_invoke(pool, [&] { a = fib(n - 1); }, [&] { b = fib(n - 2); });
//   tidepool::parallel_for(pool, 0, n, [&](int i) { out[i] = f(in[i]); });
//   long sum = tidepool::parallel_reduce(pool, 0, n, 0L, [&](int i) { return v[i]; }, std::plus<>());
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

#include <cstddef>      // for std::size_t
#include <exception>    // for std::exception_ptr, std::rethrow_exception
#include <functional>   // for std::invoke
#include <optional>     // for std::optional
#include <type_traits>  // for std::remove_reference_t
#include <utility>      // for std::move

#include "tidepool/detail/task_node.hpp"
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

// Lazy binary splitting (Tzannes, Caragea, Barua, Vishkin, PPoPP 2010): split a range in two
// only while this worker's deque is empty, i.e. while no half it offered earlier is still
// waiting for a thief. Otherwise do one grain of work and look again. Splitting thus follows
// demand instead of a fixed depth.
template <class Index, class F>
void for_range(pool& p, Index first, Index last, F& f, std::size_t grain) {
  while (static_cast<std::size_t>(last - first) > grain) {
    worker* w = worker_of(p);
    if (w != nullptr && has_local_work(*w)) {
      const Index stop = first + static_cast<Index>(grain);
      for (; first < stop; ++first) f(first);
      continue;
    }
    const Index middle = first + (last - first) / 2;
    parallel_invoke(
        p, [&] { for_range(p, first, middle, f, grain); }, [&] { for_range(p, middle, last, f, grain); });
    return;
  }
  for (; first < last; ++first) f(first);
}

template <class T, class Index, class Map, class Combine>
T reduce_range(pool& p, Index first, Index last, Map& map, Combine& combine, std::size_t grain) {
  std::optional<T> folded;  // of [start, first), in index order
  auto fold = [&](Index from, Index to) {
    for (; from < to; ++from) {
      if (folded) {
        folded.emplace(combine(std::move(*folded), map(from)));
      } else {
        folded.emplace(map(from));
      }
    }
  };
  while (static_cast<std::size_t>(last - first) > grain) {
    worker* w = worker_of(p);
    if (w != nullptr && has_local_work(*w)) {
      fold(first, first + static_cast<Index>(grain));
      first += static_cast<Index>(grain);
      continue;
    }
    const Index middle = first + (last - first) / 2;
    std::optional<T> left;
    std::optional<T> right;
    parallel_invoke(
        p, [&] { left.emplace(reduce_range<T>(p, first, middle, map, combine, grain)); },
        [&] { right.emplace(reduce_range<T>(p, middle, last, map, combine, grain)); });
    T both = combine(std::move(*left), std::move(*right));
    if (!folded) return both;
    return combine(std::move(*folded), std::move(both));
  }
  fold(first, last);
  return std::move(*folded);
}

template <class Index>
std::size_t default_grain(const pool& p, Index first, Index last) {
  // About 8 pieces per worker if nobody steals: small enough to balance, large enough that the
  // per-piece cost vanishes. Lazy splitting adapts from there.
  const auto n = static_cast<std::size_t>(last - first);
  const std::size_t pieces = 8 * p.workers();
  return n / pieces > 0 ? n / pieces : 1;
}

}  // namespace detail

// Calls f(i) for every i in [first, last), in parallel. `grain`: the most indices one piece
// runs without looking for a chance to split (0: chosen from the range and the worker count).
template <class Index, class F>
void parallel_for(pool& p, Index first, Index last, F&& f, std::size_t grain = 0) {
  if (!(first < last)) return;
  if (grain == 0) grain = detail::default_grain(p, first, last);
  if (detail::worker_of(p) == nullptr) {
    p.submit([&] { detail::for_range(p, first, last, f, grain); }).get();
    return;
  }
  detail::for_range(p, first, last, f, grain);
}

// combine(init, combine(map(first), ..., map(last - 1))) with `combine` applied in index order
// (it must be associative; it need not be commutative).
template <class Index, class T, class Map, class Combine>
T parallel_reduce(pool& p, Index first, Index last, T init, Map&& map, Combine&& combine, std::size_t grain = 0) {
  if (!(first < last)) return init;
  if (grain == 0) grain = detail::default_grain(p, first, last);
  auto reduce = [&] { return combine(std::move(init), detail::reduce_range<T>(p, first, last, map, combine, grain)); };
  if (detail::worker_of(p) == nullptr) return p.submit(reduce).get();
  return reduce();
}

}  // namespace tidepool
