// The non-template half of the coroutine support (include/tidepool/coro.hpp): the recycling
// allocator of coroutine frames; putting jobs on, and taking them back from, the calling
// worker's deque; posting a resumption to a pool; the stack guard of builds where symmetric
// transfer is a call; the subpool scheduler's submission in progress. Everything here that
// reads a thread-local is out of line on purpose (coro_frame_allocator.hpp says why).

#include <pthread.h>  // for pthread_atfork, pthread_getattr_np, pthread_attr_getstack

#include <coroutine>  // for std::coroutine_handle, std::noop_coroutine
#include <cstddef>    // for std::size_t, std::byte
#include <cstdint>    // for std::uintptr_t
#include <mutex>      // for std::mutex, std::lock_guard
#include <string>     // for std::string
#include <new>        // for ::operator new, ::operator delete, placement new
#include <vector>     // for std::vector

#include "pool_core.hpp"
#include "tidepool/coro.hpp"
#include "tidepool/detail/coro_frame_allocator.hpp"
#include "tidepool/detail/coro_jobs.hpp"
#include "tidepool/detail/sanitizers.hpp"
#include "tidepool/detail/task_completion.hpp"
#include "tidepool/fork_join.hpp"

namespace tidepool::detail {
namespace {

constexpr std::size_t class_count = max_cached_frame_bytes / frame_size_granule;
// A thread keeps up to frames_kept_per_class frames per size class; past that it hands
// batch_size of them to the depot. 256 frames of the smallest class are 16 KiB: a warm fib keeps
// well under that per thread (its live frames are as many as its depth), and deep nestings that
// outgrow it pass their frames through the depot rather than the heap.
constexpr std::size_t frames_kept_per_class = 256;

// A free frame's first bytes link it to the next free one of its list: a free frame is ours alone.
struct free_frame_link {
  free_frame_link* next;
};

// One size class of a thread's cache: the free frames, newest first.
struct frame_list {
  free_frame_link* head = nullptr;
  std::size_t count = 0;
};

constexpr std::size_t batch_size = 128;
constexpr std::size_t depot_batch_limit = 64;  // per class: 8,192 frames, 0.5 MiB of the smallest

constexpr std::size_t class_bytes(std::size_t index) noexcept { return (index + 1) * frame_size_granule; }
constexpr std::size_t class_of(std::size_t bytes) noexcept { return (bytes - 1) / frame_size_granule; }

void push(frame_list& list, void* frame) noexcept {
  list.head = ::new (frame) free_frame_link{list.head};
  ++list.count;
}
void* pop(frame_list& list) noexcept {
  free_frame_link* frame = list.head;
  list.head = frame->next;
  --list.count;
  return frame;
}
// The first n frames of `list`, as a list of their own.
frame_list split_off(frame_list& list, std::size_t n) noexcept {
  frame_list taken{list.head, n};
  free_frame_link* last = list.head;
  for (std::size_t i = 1; i < n; ++i) last = last->next;
  list.head = last->next;
  last->next = nullptr;
  list.count -= n;
  return taken;
}
void free_all(frame_list& list) noexcept {
  while (list.count > 0) ::operator delete(pop(list));
}

// Shared by all threads, one per size class. In static storage and never destroyed: a thread's
// cache goes back at thread exit, which may come after static destruction has begun.
struct depot {
  std::mutex mutex;
  std::vector<frame_list> batches;  // guarded by mutex

  [[nodiscard]] bool take(frame_list& into) noexcept {
    std::lock_guard lock(mutex);
    if (batches.empty()) return false;
    into = batches.back();
    batches.pop_back();
    return true;
  }
  void give(frame_list batch) noexcept {
    {
      std::lock_guard lock(mutex);
      if (batches.size() < depot_batch_limit) {
        try {
          batches.push_back(batch);
          return;
        } catch (...) {  // out of memory: back to the heap instead
        }
      }
    }
    free_all(batch);
  }
};

void lock_depots() noexcept;
void unlock_depots() noexcept;

depot& depot_of(std::size_t index) noexcept {
  alignas(depot) static std::byte storage[class_count][sizeof(depot)];
  static depot* const depots = [] {
    for (std::size_t i = 0; i < class_count; ++i) ::new (static_cast<void*>(storage[i])) depot;
    // A thread that forks while another holds a depot's mutex would leave it locked in the child.
    static_cast<void>(pthread_atfork(&lock_depots, &unlock_depots, &unlock_depots));
    return std::launder(reinterpret_cast<depot*>(storage[0]));
  }();
  return depots[index];
}

void lock_depots() noexcept {
  for (std::size_t i = 0; i < class_count; ++i) depot_of(i).mutex.lock();
}
void unlock_depots() noexcept {
  for (std::size_t i = class_count; i-- > 0;) depot_of(i).mutex.unlock();
}

// Trivially destructible, so that they can be read at any time of the thread's exit: a frame
// freed by a thread_local destroyed after the release below goes straight to the heap.
constinit thread_local frame_list this_thread_frames[class_count];
constinit thread_local bool this_thread_frames_released = false;

// Gives the thread's frames back at its exit; constructed (so destroyed at exit) the first time
// the thread's cache is refilled or overflows.
struct frames_release {
  ~frames_release() {
    this_thread_frames_released = true;
    for (std::size_t i = 0; i < class_count; ++i) {
      frame_list& kept = this_thread_frames[i];
      while (kept.count >= batch_size) depot_of(i).give(split_off(kept, batch_size));
      free_all(kept);
    }
  }
};
thread_local frames_release this_thread_frames_release;

}  // namespace

void* allocate_frame(std::size_t bytes) {
  if (address_sanitizer || bytes > max_cached_frame_bytes) return ::operator new(bytes);
  const std::size_t index = class_of(bytes);
  frame_list& kept = this_thread_frames[index];
  if (kept.count > 0) return pop(kept);
  if (!this_thread_frames_released) {
    static_cast<void>(&this_thread_frames_release);  // constructs it, so it will run
    if (depot_of(index).take(kept)) return pop(kept);
  }
  return ::operator new(class_bytes(index));
}

void free_frame(void* frame, std::size_t bytes) noexcept {
  if (address_sanitizer || bytes > max_cached_frame_bytes || this_thread_frames_released) {
    ::operator delete(frame);
    return;
  }
  const std::size_t index = class_of(bytes);
  frame_list& kept = this_thread_frames[index];
  if (kept.count == frames_kept_per_class) {
    static_cast<void>(&this_thread_frames_release);
    depot_of(index).give(split_off(kept, batch_size));  // the class is full: a batch to the depot
  }
  push(kept, frame);
}

namespace {

// Onto w's deque, else (full) onto its pool's global queue, not run here. A job run here would
// run nested in the caller's stack, and so would every job that one offers while the deque stays
// full: a deep when_all tree keeps a job waiting per level (UTS T3: 1,572 levels, against a
// deque of 256), so its depth would become stack depth. From the global queue any worker,
// this one included, runs it from its loop. Only if the queue cannot grow (std::bad_alloc) does
// the job run here after all.
void push_or_queue_globally(worker& w, task_node* job) noexcept {
  if (!spawn(w, job) && !w.core.try_queue_globally(w, job)) job->ops(job, task_op::run);
}

}  // namespace

bool push_local_job(worker* w, task_node* job) noexcept {
  if (w == nullptr) return false;
  push_or_queue_globally(*w, job);
  return true;
}

namespace {

// The when_all jobs this thread keeps to itself, offered to nobody yet (coro_when_all.hpp says
// when): a ring, oldest first. They are all newer than what this thread's deque holds, except
// when code other than when_all pushed onto the deque meanwhile (a parallel_invoke inside a
// co_task), which changes only the order in which the worker takes them.
// 64: a when_all tree keeps about log2(children) per level of its recursion; past that the
// jobs go to the deque as they would without the ring.
constexpr std::uint32_t kept_jobs_capacity = 64;
struct kept_jobs {
  task_node* jobs[kept_jobs_capacity];
  std::uint32_t oldest;
  std::uint32_t count;

  void keep(task_node* job) noexcept {
    jobs[(oldest + count) % kept_jobs_capacity] = job;
    ++count;
    after_this_run = &offer_kept_jobs;  // the worker offers them when its run returns
  }
  task_node* take_newest() noexcept {
    --count;
    return jobs[(oldest + count) % kept_jobs_capacity];
  }
  task_node* take_oldest() noexcept {
    task_node* const job = jobs[oldest];
    oldest = (oldest + 1) % kept_jobs_capacity;
    --count;
    return job;
  }
};
constinit thread_local kept_jobs this_thread_kept_jobs{};

// Onto w's deque, or, if it is full, the global queue.
void offer_oldest_kept(worker& w, kept_jobs& kept) noexcept { push_or_queue_globally(w, kept.take_oldest()); }

// Keeps `job` unless the ring is full.
bool try_keep(kept_jobs& kept, task_node* job) noexcept {
  if (kept.count == kept_jobs_capacity) return false;
  kept.keep(job);
  return true;
}

}  // namespace

bool keep_local_job(worker& w, task_node* job) noexcept {
  return !w.deque.empty_estimate() && try_keep(this_thread_kept_jobs, job);
}

bool offer_local_job(worker* w, task_node* job) noexcept {
  if (w == nullptr) return false;
  kept_jobs& kept = this_thread_kept_jobs;
  if (w->deque.empty_estimate()) {
    // Nothing is waiting for a thief: offer the oldest job (the biggest range), as a worker
    // splitting a parallel_reduce range does when its deque is empty.
    if (kept.count == 0) return spawn(*w, job);
    offer_oldest_kept(*w, kept);
  }
  if (!try_keep(kept, job)) push_or_queue_globally(*w, job);
  return true;
}

task_node* take_back_local_job(worker& w, task_ops_fn ops) noexcept {
  kept_jobs& kept = this_thread_kept_jobs;
  if (kept.count > 0) {
    task_node* const newest = kept.take_newest();  // a when_all job: the only kind kept
    // A thief took what was on the deque: give it the next.
    if (kept.count > 0 && w.deque.empty_estimate()) offer_oldest_kept(w, kept);
    return newest;
  }
  if (w.deque.empty_estimate()) return nullptr;
  task_node* const newest = w.deque.pop();
  if (newest == nullptr || newest->ops == ops) return newest;
  // Something else: back where it was (the slot we just emptied, so the push cannot fail). It
  // was never out of sight of the wake-up decisions: no new work appeared.
  static_cast<void>(w.deque.push(newest));
  return nullptr;
}

void offer_kept_jobs() noexcept {
  kept_jobs& kept = this_thread_kept_jobs;
  if (kept.count == 0) return;
  worker* const w = current_worker();  // non-null: jobs are kept only on a worker
  // A job run here because the deque is full may keep jobs of its own; they go too.
  while (kept.count > 0) offer_oldest_kept(*w, kept);
}

bool post_resumption(pool& p, std::coroutine_handle<> suspended) {
  pool_core& core = pool_access::core(p);
  if (pool_stopping(core)) return false;
  post_internal_job(core, make_task_node<resume_coroutine, void>(resume_coroutine{suspended}, task_kind::internal_job));
  return true;
}

namespace {
// Below this address the thread has used more than half of its stack; 0: not known yet.
thread_local std::uintptr_t stack_half_way = 0;

std::uintptr_t find_stack_half_way() noexcept {
  pthread_attr_t attributes;
  void* lowest = nullptr;
  std::size_t size = 0;
  if (pthread_getattr_np(pthread_self(), &attributes) != 0) return 1;  // unknown: never "low"
  const bool known = pthread_attr_getstack(&attributes, &lowest, &size) == 0;
  pthread_attr_destroy(&attributes);
  if (!known) return 1;
  return reinterpret_cast<std::uintptr_t>(lowest) + size / 2;
}
}  // namespace

bool stack_running_low() noexcept {
  if (stack_half_way == 0) stack_half_way = find_stack_half_way();
  const char here = 0;
  return reinterpret_cast<std::uintptr_t>(&here) < stack_half_way;
}

std::coroutine_handle<> post_to_this_worker(std::coroutine_handle<> next) noexcept {
  task_node* job = nullptr;
  try {
    job = make_task_node<resume_coroutine, void>(resume_coroutine{next}, task_kind::internal_job);
  } catch (...) {
    return next;
  }
  if (push_local_job(current_worker(), job)) return std::noop_coroutine();
  release_task_node(job);
  return next;
}

void throw_empty_co_task(const char* who) {
  throw error(std::string("tidepool: ") + who + ": the co_task is empty (default-constructed, moved from, or started already)");
}

namespace {
thread_local subpool_submission* this_thread_subpool_submission = nullptr;
}  // namespace

void subpool_submission_begin(subpool_submission& s) noexcept {
  s.outer = this_thread_subpool_submission;
  this_thread_subpool_submission = &s;
}

void subpool_submission_end(subpool_submission& s) noexcept { this_thread_subpool_submission = s.outer; }

bool subpool_submission_skipped(const void* scheduler) noexcept {
  for (subpool_submission* s = this_thread_subpool_submission; s != nullptr; s = s->outer) {
    if (s->scheduler == scheduler) {
      s->skipped = true;
      return true;
    }
  }
  return false;
}

}  // namespace tidepool::detail
