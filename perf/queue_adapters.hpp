#pragma once
// One narrow interface over the MPMC queues compared in perf/: push a non-null pointer, try to pop
// one. Each adapter uses its library the way that library's documentation recommends for
// anonymous producers and consumers (no producer/consumer tokens: a scheduler's submitters are
// arbitrary threads).

#include <boost/lockfree/queue.hpp>  // for boost::lockfree::queue
#include <concurrentqueue.h>         // for moodycamel::ConcurrentQueue

#include <cstddef>  // for std::byte
#include <deque>    // for std::deque
#include <mutex>    // for std::mutex, std::lock_guard

#include "tidepool/detail/segmented_queue.hpp"

namespace tidepool::perf {

struct tidepool_queue {
  tidepool::detail::segmented_queue<std::byte> queue;
  void push(void* p) { queue.enqueue(static_cast<std::byte*>(p)); }
  bool try_pop(void*& p) {
    p = queue.try_dequeue();
    return p != nullptr;
  }
};

struct moodycamel_queue {
  moodycamel::ConcurrentQueue<void*> queue;
  void push(void* p) { queue.enqueue(p); }
  bool try_pop(void*& p) { return queue.try_dequeue(p); }
};

struct boost_lockfree_queue {
  boost::lockfree::queue<void*> queue{1024};  // initial node pool; grows on demand
  void push(void* p) {
    while (!queue.push(p)) {
    }
  }
  bool try_pop(void*& p) { return queue.pop(p); }
};

struct mutex_deque_queue {
  std::mutex mutex;
  std::deque<void*> queue;
  void push(void* p) {
    std::lock_guard lock(mutex);
    queue.push_back(p);
  }
  bool try_pop(void*& p) {
    std::lock_guard lock(mutex);
    if (queue.empty()) return false;
    p = queue.front();
    queue.pop_front();
    return true;
  }
};

}  // namespace tidepool::perf
