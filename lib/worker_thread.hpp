#pragma once
// A worker's thread. Private to lib/.
//
// Not std::thread, for two reasons: a worker's stack size is an option (pool_options::stack_size;
// std::thread always takes the system default, 8 MiB on Linux, which one task returning a 16 MiB
// object overflows), and a pool used in a child process after fork() must be able to forget
// threads that do not exist there without calling into pthreads about them (their descriptors
// may already be reused by the child's own new threads).

#include <pthread.h>  // for pthread_create, pthread_join, pthread_detach, pthread_attr_*

#include <cstddef>       // for std::size_t
#include <memory>        // for std::unique_ptr
#include <system_error>  // for std::system_error, std::generic_category
#include <utility>       // for std::move

namespace tidepool::detail {

class worker_thread {
 public:
  worker_thread() noexcept = default;
  worker_thread(const worker_thread&) = delete;
  worker_thread& operator=(const worker_thread&) = delete;
  // Unlike std::thread, a thread still joinable here is detached, not a call to std::terminate.
  ~worker_thread() {
    if (joinable_) pthread_detach(handle_);
  }

  // Runs `body()` on a new thread with a stack of `stack_size` bytes (0: the system's default).
  // Throws std::system_error if the thread cannot be created, std::bad_alloc if its start-up
  // record cannot; nothing is started then.
  template <class Body>
  void start(std::size_t stack_size, Body body) {
    auto record = std::make_unique<Body>(std::move(body));
    pthread_attr_t attributes;
    if (const int error = pthread_attr_init(&attributes); error != 0) fail(error);
    struct destroy_on_exit {
      pthread_attr_t& a;
      ~destroy_on_exit() { pthread_attr_destroy(&a); }
    } destroy{attributes};
    if (stack_size != 0) {
      if (const int error = pthread_attr_setstacksize(&attributes, stack_size); error != 0) fail(error);
    }
    if (const int error = pthread_create(&handle_, &attributes, &run<Body>, record.get()); error != 0) fail(error);
    record.release();  // the new thread owns it now
    joinable_ = true;
  }

  [[nodiscard]] bool joinable() const noexcept { return joinable_; }
  void join() noexcept {
    pthread_join(handle_, nullptr);
    joinable_ = false;
  }
  void detach() noexcept {
    pthread_detach(handle_);
    joinable_ = false;
  }
  // In a child process after fork(): the thread does not exist here. No pthread call may name it.
  void forget() noexcept { joinable_ = false; }

 private:
  template <class Body>
  static void* run(void* record) {
    // Destroyed when the body returns, on this thread: whatever the body owns is released last.
    const std::unique_ptr<Body> body(static_cast<Body*>(record));
    (*body)();
    return nullptr;
  }

  [[noreturn]] static void fail(int error) {
    throw std::system_error(error, std::generic_category(), "tidepool: cannot start a worker thread");
  }

  pthread_t handle_{};
  bool joinable_ = false;
};

}  // namespace tidepool::detail
