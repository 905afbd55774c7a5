// Task-node allocation: per-thread caches, with a shared depot that moves whole batches between
// threads, so a submit costs no malloc in the common case.
//
// Why a depot: nodes are freed where a task's last reference drops (a worker, or the thread that
// held the handle), and allocated where tasks are submitted (often a thread outside the pool). A
// purely thread-local cache would fill on the workers and run dry on the submitter. Batches of
// `batch_size` cross through the depot under one mutex acquisition, so its cost is amortised
// over 64 nodes. Everything cached is an empty node: the no-retention rule holds in caches too.

#include <mutex>   // for std::mutex, std::lock_guard
#include <vector>  // for std::vector

#include "tidepool/detail/sanitizers.hpp"
#include "tidepool/detail/task_node.hpp"

namespace tidepool::detail {
namespace {

constexpr std::size_t batch_size = 64;
constexpr std::size_t local_limit = 2 * batch_size;
constexpr std::size_t depot_batch_limit = 64;  // 4,096 nodes (512 KiB) at most in the depot

struct batch {
  task_node* head;
  std::size_t count;
};

struct depot {
  std::mutex mutex;
  std::vector<batch> batches;
};

depot& shared_depot() {
  // Never destroyed: thread caches hand their nodes back at thread exit, which may come after
  // static destruction has begun. The nodes stay reachable from here, so LeakSanitizer is quiet.
  static auto* instance = new depot;
  return *instance;
}

void delete_list(task_node* head) noexcept {
  while (head != nullptr) {
    task_node* next = head->next_free;
    delete head;
    head = next;
  }
}

struct thread_cache {
  task_node* head = nullptr;
  std::size_t count = 0;

  ~thread_cache() { give_back(count); }

  // Moves `n` nodes from the front of this cache to the depot, or frees them if it is full.
  void give_back(std::size_t n) noexcept {
    if (n == 0) return;
    task_node* first = head;
    task_node* last = head;
    for (std::size_t i = 1; i < n; ++i) last = last->next_free;
    head = last->next_free;
    last->next_free = nullptr;
    count -= n;
    depot& d = shared_depot();
    {
      std::lock_guard lock(d.mutex);
      if (d.batches.size() < depot_batch_limit) {
        d.batches.push_back({first, n});
        return;
      }
    }
    delete_list(first);
  }

  bool refill() noexcept {
    depot& d = shared_depot();
    std::lock_guard lock(d.mutex);
    if (d.batches.empty()) return false;
    const batch b = d.batches.back();
    d.batches.pop_back();
    head = b.head;
    count = b.count;
    return true;
  }
};

thread_local thread_cache this_thread_cache;

}  // namespace

task_node* allocate_task_node() {
  // Under AddressSanitizer every node is a fresh allocation, so a use after release is reported
  // instead of hidden by recycling.
  if constexpr (!address_sanitizer) {
    thread_cache& cache = this_thread_cache;
    if (cache.head != nullptr || cache.refill()) {
      task_node* n = cache.head;
      cache.head = n->next_free;
      --cache.count;
      n->next_free = nullptr;
      return n;
    }
  }
  return new task_node;
}

void free_task_node(task_node* node) noexcept {
  if constexpr (address_sanitizer) {
    delete node;
  } else {
    thread_cache& cache = this_thread_cache;
    node->next_free = cache.head;
    cache.head = node;
    if (++cache.count > local_limit) cache.give_back(batch_size);
  }
}

void release_task_node(task_node* node) noexcept {
  // acq_rel: the releasing thread's uses of the node happen-before the reset below.
  if (node->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (node->has_result) {
    node->ops(node, task_op::destroy_result);
    node->has_result = false;
  }
  node->error = nullptr;
  node->ops = nullptr;
  node->state.store(outcome_pending, std::memory_order_relaxed);
  free_task_node(node);
}

}  // namespace tidepool::detail
