#include "tidepool/default_pool.hpp"

#include <pthread.h>  // for pthread_atfork

#include <atomic>        // for std::atomic
#include <mutex>         // for std::mutex, std::lock_guard
#include <system_error>  // for std::system_error, std::generic_category

namespace tidepool {
namespace {

// Deliberately leaked (see default_pool.hpp). Created on first use under `creation`, so using it
// from another static initializer is safe too; acquire/release: whoever sees the pointer sees
// the constructed pool.
std::atomic<pool*> instance{nullptr};
std::mutex creation;  // constant-initialized, trivially destroyed: usable from static destructors

// In a child process after fork() the parent's pool has no workers (it refuses everything), so
// the child starts over with a new one. The lock is held across fork() so that the child never
// inherits it locked by a thread that does not exist there.
void lock_before_fork() noexcept { creation.lock(); }
void unlock_in_parent() noexcept { creation.unlock(); }
void start_over_in_child() noexcept {
  // The parent's pool stays allocated (it is unusable, not freed): reachable from here.
  static std::atomic<pool*> left_by_parent{nullptr};
  left_by_parent.store(instance.load(std::memory_order_relaxed), std::memory_order_relaxed);
  instance.store(nullptr, std::memory_order_relaxed);
  creation.unlock();
}

}  // namespace

pool& default_pool() {
  if (pool* p = instance.load(std::memory_order_acquire)) return *p;
  static const bool fork_handlers_registered = [] {
    if (const int error = pthread_atfork(&lock_before_fork, &unlock_in_parent, &start_over_in_child); error != 0) {
      throw std::system_error(error, std::generic_category(), "tidepool: pthread_atfork");
    }
    return true;
  }();
  static_cast<void>(fork_handlers_registered);
  std::lock_guard lock(creation);
  pool* p = instance.load(std::memory_order_relaxed);
  if (p == nullptr) {
    p = new pool();
    instance.store(p, std::memory_order_release);
  }
  return *p;
}

}  // namespace tidepool
