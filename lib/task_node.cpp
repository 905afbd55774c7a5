// Task-node allocation: per-thread caches, with a shared depot that moves whole batches between
// threads, so a submit costs no malloc in the common case.
//
// Why a depot: nodes are freed where a task's last reference drops (a worker, or the thread that
// held the handle), and allocated where tasks are submitted (often a thread outside the pool). A
// purely thread-local cache would fill on the workers and run dry on the submitter. Batches of
// `batch_size` cross through the depot under one mutex acquisition, so its cost is amortised
// over 64 nodes. Everything cached is an empty node: the no-retention rule holds in caches too.

#include <algorithm>  // for std::copy, std::copy_n
#include <array>      // for std::array
#include <cstddef>    // for std::byte
#include <new>        // for placement new
#include <mutex>      // for std::mutex, std::lock_guard
#include <vector>     // for std::vector

#include "tidepool/detail/sanitizers.hpp"
#include "tidepool/detail/task_node.hpp"

namespace tidepool::detail {
namespace {

constexpr std::size_t batch_size = 64;
constexpr std::size_t local_limit = 2 * batch_size;
// 16,384 empty nodes (2 MiB) at most in the depot: enough to absorb a burst of queued tasks
// without malloc churn between submitter and workers, small next to what the burst itself used.
constexpr std::size_t depot_batch_limit = 256;

// Caches hold node pointers in arrays, not in a list threaded through the nodes: freeing a node
// then writes nothing into it. The worker that ran a task has only read its node, so when the
// submitter reuses it the cache line is merely shared, not owned elsewhere, which is markedly
// cheaper to take back than a line the worker last wrote.
using batch = std::array<task_node*, batch_size>;

struct depot {
  std::mutex mutex;
  std::vector<batch> batches;
};

depot& shared_depot() {
  // Never destroyed: thread caches hand their nodes back at thread exit, which may come after
  // static destruction has begun. The nodes stay reachable from here, so LeakSanitizer is quiet.
  // Built in static storage, not with new: it is first reached from noexcept code (refill,
  // give_back), where a failed allocation would end the process.
  alignas(depot) static std::byte storage[sizeof(depot)];
  static depot* const instance = ::new (static_cast<void*>(storage)) depot;
  return *instance;
}

// Trivially destructible, so it can still be read after this_thread_cache is destroyed: a task
// handle held by a thread_local destroyed later must still be able to free its node.
thread_local bool this_thread_cache_destroyed = false;

struct thread_cache {
  std::array<task_node*, local_limit> nodes;
  std::size_t count = 0;

  ~thread_cache() {
    this_thread_cache_destroyed = true;
    while (count >= batch_size) give_back();
    for (std::size_t i = 0; i < count; ++i) delete nodes[i];
  }

  // Moves the oldest batch to the depot, or frees it if the depot is full.
  void give_back() noexcept {
    batch b;
    std::copy_n(nodes.begin(), batch_size, b.begin());
    std::copy(nodes.begin() + batch_size, nodes.begin() + static_cast<std::ptrdiff_t>(count), nodes.begin());
    count -= batch_size;
    depot& d = shared_depot();
    {
      std::lock_guard lock(d.mutex);
      if (d.batches.size() < depot_batch_limit) {
        try {
          d.batches.push_back(b);
          return;
        } catch (...) {  // out of memory: free the nodes instead
        }
      }
    }
    for (task_node* n : b) delete n;
  }

  bool refill() noexcept {
    depot& d = shared_depot();
    std::lock_guard lock(d.mutex);
    if (d.batches.empty()) return false;
    std::copy(d.batches.back().begin(), d.batches.back().end(), nodes.begin());
    d.batches.pop_back();
    count = batch_size;
    return true;
  }
};

thread_local thread_cache this_thread_cache;

}  // namespace

task_node* allocate_task_node() {
  // Under AddressSanitizer every node is a fresh allocation, so a use after release is reported
  // instead of hidden by recycling.
  if (!address_sanitizer && !this_thread_cache_destroyed) {
    thread_cache& cache = this_thread_cache;
    if (cache.count > 0 || cache.refill()) return cache.nodes[--cache.count];
  }
  return new task_node;
}

void free_task_node(task_node* node) noexcept {
  if (address_sanitizer || this_thread_cache_destroyed) {
    delete node;
  } else {
    thread_cache& cache = this_thread_cache;
    if (cache.count == local_limit) cache.give_back();
    cache.nodes[cache.count++] = node;
  }
}

void release_task_node(task_node* node) noexcept {
  // A count of 1 is ours alone (nobody else can add a reference), so the read-modify-write can
  // be skipped: the common case for go() tasks. acquire/acq_rel: the other holder's uses of the
  // node happen-before the reset below.
  if (node->refs.load(std::memory_order_acquire) != 1 && node->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) {
    return;
  }
  // Back to the empty state, writing only what is not empty already (see the cache's comment).
  if (node->has_result) {
    node->ops(node, task_op::destroy_result);
    node->has_result = false;
  }
  if (node->error != nullptr) node->error = nullptr;
  if (node->state.load(std::memory_order_relaxed) != outcome_pending) {
    node->state.store(outcome_pending, std::memory_order_relaxed);
  }
  free_task_node(node);
}

void discard_task_node(task_node* node) noexcept {
  node->ops(node, task_op::cancel);
  node->refs.store(1, std::memory_order_relaxed);  // nobody else ever saw it
  release_task_node(node);
}

}  // namespace tidepool::detail
