#pragma once
// Keeps `n` workers of a pool or subpool busy until release(), for tests of full queues and
// stops. The blocking tasks share their state with this object through a shared_ptr, so it may
// be destroyed (which releases them) before the pool finishes them.

#include <latch>   // for std::latch
#include <memory>  // for std::shared_ptr, std::make_shared

namespace tidepool::testing {

class occupied_workers {
 public:
  template <class Executor>
  occupied_workers(Executor& executor, int n) : state_(std::make_shared<state>(n)) {
    for (int i = 0; i < n; ++i) {
      executor.go([s = state_] {
        s->running.count_down();
        s->release.wait();
      });
    }
    state_->running.wait();  // every one of them is running now
  }
  ~occupied_workers() { release(); }
  occupied_workers(const occupied_workers&) = delete;
  occupied_workers& operator=(const occupied_workers&) = delete;

  void release() {
    if (!released_) state_->release.count_down();
    released_ = true;
  }

 private:
  struct state {
    explicit state(int n) : running(n) {}
    std::latch running;
    std::latch release{1};
  };
  std::shared_ptr<state> state_;
  bool released_ = false;
};

}  // namespace tidepool::testing
