// DevicePtr<T>: an address in a backend's memory (model/ops/backend.h), opaque to host code.
//
// It can be offset, tested for null, compared and converted (to const, to void, and a void
// pointer back to a typed one), but not dereferenced: it has no operator*, operator[] or public
// raw pointer. Only Backend implementations can unwrap or wrap one, because that takes a
// BackendAccess passkey which only the Backend class can construct (Backend::Raw / Wrap). So
// host code that reads or writes device memory does not compile; data crosses between host and
// device only through the backend's directed transfers.
#ifndef GRPO_MODEL_OPS_DEVICE_PTR_H_
#define GRPO_MODEL_OPS_DEVICE_PTR_H_

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace grpo {

class Backend;

// The passkey for raw access. Only Backend (and through its protected helpers, its
// implementations) can make one.
class BackendAccess {
 private:
  BackendAccess() = default;
  friend class Backend;
};

template <class T>
class DevicePtr {
 public:
  DevicePtr() = default;
  DevicePtr(std::nullptr_t) {}  // NOLINT: null converts implicitly, like a raw pointer
  // T* <- U* conversions a raw pointer allows (to const, to void).
  template <class U>
    requires(std::is_convertible_v<U*, T*> && !std::is_same_v<U, T>)
  DevicePtr(DevicePtr<U> other) : p_(other.p_) {}  // NOLINT: implicit like U* -> T*

  // Element offset (not for void pointers: offset typed pointers, then convert).
  template <class U = T>
    requires(!std::is_void_v<U>)
  DevicePtr operator+(int64_t n) const { return DevicePtr(p_ + n); }

  explicit operator bool() const { return p_ != nullptr; }
  friend bool operator==(DevicePtr a, DevicePtr b) { return a.p_ == b.p_; }
  friend bool operator==(DevicePtr a, std::nullptr_t) { return a.p_ == nullptr; }

  // A void pointer as a typed one (the buffer's element type is the caller's to know;
  // Buffer's accessors check it).
  template <class U>
    requires(std::is_void_v<T> && (std::is_const_v<U> || !std::is_const_v<T>))
  DevicePtr<U> As() const { return DevicePtr<U>(static_cast<U*>(p_)); }

  // Raw access, for backend implementations only.
  T* get(BackendAccess) const { return p_; }
  static DevicePtr Wrap(T* p, BackendAccess) { return DevicePtr(p); }

 private:
  template <class U>
  friend class DevicePtr;
  explicit DevicePtr(T* p) : p_(p) {}
  T* p_ = nullptr;
};

}  // namespace grpo

#endif  // GRPO_MODEL_OPS_DEVICE_PTR_H_
