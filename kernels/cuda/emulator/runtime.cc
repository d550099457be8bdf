// The emulator's CUDA runtime: one device, memory from mmap with a guard page after every
// device allocation, streams and events as handles (work runs when it is enqueued).
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/emulator/emulated_device.h"

struct CUstream_st {
  unsigned int flags;
};
struct CUevent_st {
  unsigned int flags;
  bool enqueued = false;  // cudaEventRecord was called
  bool recorded = false;  // ... and the work before it has run
  std::chrono::steady_clock::time_point when;
};
struct CUmemPoolHandle_st {};

namespace jamba::cuda_emu {
namespace {

constexpr size_t kAllocationAlign = 256;  // cudaMalloc's alignment

struct Allocation {
  void* map_base;
  size_t map_bytes;
  size_t bytes;
  bool device;  // false: cudaMallocHost
};

struct DeviceState {
  std::mutex mu;
  std::map<uintptr_t, Allocation> allocations;  // by the address handed out
  size_t device_bytes = 0;
  std::set<cudaStream_t> streams;
  std::set<cudaEvent_t> events;
  std::unordered_map<const void*, size_t> kernel_shared_limit;
  CUmemPoolHandle_st pool;
};

DeviceState& State() {
  static DeviceState* state = new DeviceState();  // outlives static destructors' frees
  return *state;
}

thread_local cudaError_t t_last_error = cudaSuccess;

std::mutex g_queue_mu;
std::deque<std::function<void()>> g_queue;  // the streams' work, in enqueue order
std::mutex g_run_mu;

// Whether [p, p + bytes) lies inside one live allocation of the kind (device: cudaMalloc*,
// else cudaMallocHost).
bool InAllocation(const void* p, size_t bytes, bool device) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  DeviceState& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.allocations.upper_bound(a);
  if (it == s.allocations.begin()) return false;
  --it;
  return it->second.device == device && a >= it->first && a - it->first <= it->second.bytes &&
         bytes <= it->second.bytes - (a - it->first);
}
thread_local int t_device = 0;

// `bytes` (rounded up to 256) ending where a PROT_NONE page begins, filled with 0xff.
cudaError_t Map(void** ptr, size_t bytes, bool device) {
  if (ptr == nullptr) return Record(cudaErrorInvalidValue);
  if (bytes == 0) {
    *ptr = nullptr;
    return cudaSuccess;
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  DeviceState& s = State();
  // Refused before anything is mapped: sizes the arithmetic below cannot round, and device
  // allocations past the emulated device's memory (reserved under the lock, so concurrent
  // allocations cannot both pass).
  if (bytes > kTotalMemoryBytes) return Record(cudaErrorMemoryAllocation);
  if (device) {
    std::lock_guard<std::mutex> lock(s.mu);
    if (bytes > kTotalMemoryBytes - s.device_bytes) return Record(cudaErrorMemoryAllocation);
    s.device_bytes += bytes;
  }
  auto unreserve = [&] {
    if (!device) return;
    std::lock_guard<std::mutex> lock(s.mu);
    s.device_bytes -= bytes;
  };
  const size_t rounded = (bytes + kAllocationAlign - 1) / kAllocationAlign * kAllocationAlign;
  const size_t data_pages = (rounded + page - 1) / page * page;
  const size_t map_bytes = data_pages + page;
  void* base = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    unreserve();
    return Record(cudaErrorMemoryAllocation);
  }
  if (mprotect(static_cast<uint8_t*>(base) + data_pages, page, PROT_NONE) != 0) {
    munmap(base, map_bytes);
    unreserve();
    return Record(cudaErrorMemoryAllocation);
  }
  uint8_t* p = static_cast<uint8_t*>(base) + data_pages - rounded;
  std::memset(p, 0xff, rounded);
  std::lock_guard<std::mutex> lock(s.mu);
  s.allocations[reinterpret_cast<uintptr_t>(p)] = Allocation{base, map_bytes, bytes, device};
  *ptr = p;
  return cudaSuccess;
}

cudaError_t Unmap(void* ptr, bool device) {
  if (ptr == nullptr) return cudaSuccess;
  DeviceState& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.allocations.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == s.allocations.end() || it->second.device != device) {
    return Record(cudaErrorInvalidValue);
  }
  munmap(it->second.map_base, it->second.map_bytes);
  if (device) s.device_bytes -= it->second.bytes;
  s.allocations.erase(it);
  return cudaSuccess;
}

// Checks the device side(s) of a copy the way `kind` declares them.
bool CopyValid(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  switch (kind) {
    case cudaMemcpyHostToHost:
    case cudaMemcpyDefault:
      return true;
    case cudaMemcpyHostToDevice:
      return InDeviceAllocation(dst, bytes);
    case cudaMemcpyDeviceToHost:
      return InDeviceAllocation(src, bytes);
    case cudaMemcpyDeviceToDevice:
      return InDeviceAllocation(dst, bytes) && InDeviceAllocation(src, bytes);
  }
  return false;
}

// A new stream or event (H: CUstream_st, CUevent_st), live until DeleteHandle.
template <typename H>
cudaError_t NewHandle(std::set<H*> DeviceState::*live, H** out, unsigned int flags) {
  if (out == nullptr) return Record(cudaErrorInvalidValue);
  DeviceState& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  *out = new H{flags};
  (s.*live).insert(*out);
  return cudaSuccess;
}

template <typename H>
cudaError_t DeleteHandle(std::set<H*> DeviceState::*live, H* handle) {
  DeviceState& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  if ((s.*live).erase(handle) == 0) return Record(cudaErrorInvalidResourceHandle);
  delete handle;
  return cudaSuccess;
}

}  // namespace

cudaError_t Record(cudaError_t e) {
  if (e != cudaSuccess) t_last_error = e;
  return e;
}

bool StreamValid(cudaStream_t stream) {
  if (stream == nullptr) return true;
  DeviceState& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.streams.count(stream) != 0;
}

size_t KernelSharedLimit(const void* kernel) {
  DeviceState& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.kernel_shared_limit.find(kernel);
  return it == s.kernel_shared_limit.end() ? kDefaultSharedBytes : it->second;
}

bool InDeviceAllocation(const void* p, size_t bytes) { return InAllocation(p, bytes, true); }

void Enqueue(std::function<void()> work) {
  std::lock_guard<std::mutex> lock(g_queue_mu);
  g_queue.push_back(std::move(work));
}

void RunQueued() {
  std::lock_guard<std::mutex> run(g_run_mu);  // one host thread runs the queue at a time
  for (;;) {
    std::function<void()> work;
    {
      std::lock_guard<std::mutex> lock(g_queue_mu);
      if (g_queue.empty()) return;
      work = std::move(g_queue.front());
      g_queue.pop_front();
    }
    work();
  }
}

}  // namespace jamba::cuda_emu

using jamba::cuda_emu::Record;
using jamba::cuda_emu::State;

cudaError_t cudaGetLastError() {
  const cudaError_t e = jamba::cuda_emu::t_last_error;
  jamba::cuda_emu::t_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return jamba::cuda_emu::t_last_error; }

namespace jamba::cuda_emu {
namespace {

// The error codes the emulator returns, with the toolkit's name and text for each.
struct ErrorText {
  cudaError_t code;
  const char* name;
  const char* text;
};
constexpr ErrorText kErrorTexts[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration",
     "invalid configuration argument"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
};
constexpr ErrorText kUnknownError = {cudaSuccess, "cudaErrorUnknown", "unknown error"};

const ErrorText& FindErrorText(cudaError_t error) {
  for (const ErrorText& e : kErrorTexts) {
    if (e.code == error) return e;
  }
  return kUnknownError;
}

}  // namespace
}  // namespace jamba::cuda_emu

const char* cudaGetErrorName(cudaError_t error) {
  return jamba::cuda_emu::FindErrorText(error).name;
}

const char* cudaGetErrorString(cudaError_t error) {
  return jamba::cuda_emu::FindErrorText(error).text;
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return Record(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device != 0) return Record(cudaErrorInvalidDevice);
  jamba::cuda_emu::t_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return Record(cudaErrorInvalidValue);
  *device = jamba::cuda_emu::t_device;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (value == nullptr) return Record(cudaErrorInvalidValue);
  if (device != 0) return Record(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = static_cast<int>(jamba::cuda_emu::kDefaultSharedBytes);
      return cudaSuccess;
    case cudaDevAttrMultiProcessorCount:
      *value = jamba::cuda_emu::kMultiProcessors;
      return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(jamba::cuda_emu::kOptinSharedBytes);
      return cudaSuccess;
    case cudaDevAttrMemoryPoolsSupported:
      *value = 1;
      return cudaSuccess;
  }
  return Record(cudaErrorInvalidValue);
}

cudaError_t cudaDeviceSynchronize() {
  jamba::cuda_emu::RunQueued();
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return Record(cudaErrorInvalidValue);
  auto& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  *total_bytes = jamba::cuda_emu::kTotalMemoryBytes;
  *free_bytes = jamba::cuda_emu::kTotalMemoryBytes - s.device_bytes;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) { return jamba::cuda_emu::Map(ptr, bytes, true); }

// Frees wait for the device (as cudaFree does), so queued work never touches freed memory.
cudaError_t cudaFree(void* ptr) {
  jamba::cuda_emu::RunQueued();
  return jamba::cuda_emu::Unmap(ptr, true);
}

cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t stream) {
  if (!jamba::cuda_emu::StreamValid(stream)) return Record(cudaErrorInvalidResourceHandle);
  return cudaMalloc(ptr, bytes);
}

// Stream-ordered: the memory goes back after the work queued before it.
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream) {
  if (!jamba::cuda_emu::StreamValid(stream)) return Record(cudaErrorInvalidResourceHandle);
  if (ptr != nullptr && !jamba::cuda_emu::InDeviceAllocation(ptr, 1)) {
    return Record(cudaErrorInvalidValue);
  }
  jamba::cuda_emu::Enqueue([ptr] { jamba::cuda_emu::Unmap(ptr, true); });
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  return jamba::cuda_emu::Map(ptr, bytes, false);
}

cudaError_t cudaFreeHost(void* ptr) {
  jamba::cuda_emu::RunQueued();
  return jamba::cuda_emu::Unmap(ptr, false);
}

// Blocking: the asynchronous copy on the default stream, then a wait for the device.
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  const cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
  if (e == cudaSuccess) jamba::cuda_emu::RunQueued();
  return e;
}

// The runtime's rules for asynchronous copies: from pageable host memory the source is staged
// before the call returns (the caller may reuse it at once); to pageable host memory the call
// returns once the copy is done; between device and pinned (cudaMallocHost) memory the copy
// runs in stream order, later, reading and writing the host side when it runs.
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (!jamba::cuda_emu::StreamValid(stream)) return Record(cudaErrorInvalidResourceHandle);
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr || !jamba::cuda_emu::CopyValid(dst, src, bytes, kind)) {
    return Record(cudaErrorInvalidValue);
  }
  using jamba::cuda_emu::InAllocation;
  if (kind == cudaMemcpyHostToDevice && !InAllocation(src, bytes, false)) {
    auto staged = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(src),
                                                         static_cast<const uint8_t*>(src) + bytes);
    jamba::cuda_emu::Enqueue([dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
    return cudaSuccess;
  }
  if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice ||
      (kind == cudaMemcpyDeviceToHost && InAllocation(dst, bytes, false))) {
    jamba::cuda_emu::Enqueue([dst, src, bytes] { std::memmove(dst, src, bytes); });
    return cudaSuccess;
  }
  jamba::cuda_emu::RunQueued();  // to pageable memory, host to host, or kind Default
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  const cudaError_t e = cudaMemsetAsync(ptr, value, bytes, nullptr);
  if (e == cudaSuccess) jamba::cuda_emu::RunQueued();
  return e;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  if (!jamba::cuda_emu::StreamValid(stream)) return Record(cudaErrorInvalidResourceHandle);
  if (bytes == 0) return cudaSuccess;
  if (!jamba::cuda_emu::InDeviceAllocation(ptr, bytes)) return Record(cudaErrorInvalidValue);
  jamba::cuda_emu::Enqueue([ptr, value, bytes] { std::memset(ptr, value, bytes); });
  return cudaSuccess;
}

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
  if (pool == nullptr) return Record(cudaErrorInvalidValue);
  if (device != 0) return Record(cudaErrorInvalidDevice);
  *pool = &State().pool;
  return cudaSuccess;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
  if (pool != &State().pool || value == nullptr) return Record(cudaErrorInvalidValue);
  return attr == cudaMemPoolAttrReleaseThreshold ? cudaSuccess : Record(cudaErrorInvalidValue);
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (flags > cudaStreamNonBlocking) return Record(cudaErrorInvalidValue);
  return jamba::cuda_emu::NewHandle(&jamba::cuda_emu::DeviceState::streams, stream, flags);
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  return jamba::cuda_emu::DeleteHandle(&jamba::cuda_emu::DeviceState::streams, stream);
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (!jamba::cuda_emu::StreamValid(stream)) return Record(cudaErrorInvalidResourceHandle);
  jamba::cuda_emu::RunQueued();
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  return jamba::cuda_emu::NewHandle(&jamba::cuda_emu::DeviceState::events, event, flags);
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  return jamba::cuda_emu::DeleteHandle(&jamba::cuda_emu::DeviceState::events, event);
}

// The event completes (and takes its time) when the work queued before it has run.
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!jamba::cuda_emu::StreamValid(stream)) return Record(cudaErrorInvalidResourceHandle);
  {
    auto& s = State();
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.events.count(event) == 0) return Record(cudaErrorInvalidResourceHandle);
    event->enqueued = true;
    event->recorded = false;
  }
  jamba::cuda_emu::Enqueue([event] {
    auto& s = State();
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.events.count(event) == 0) return;  // destroyed meanwhile
    event->recorded = true;
    event->when = std::chrono::steady_clock::now();
  });
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  {
    auto& s = State();
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.events.count(event) == 0) return Record(cudaErrorInvalidResourceHandle);
  }
  jamba::cuda_emu::RunQueued();
  return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr) return Record(cudaErrorInvalidValue);
  auto& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.events.count(start) == 0 || s.events.count(end) == 0 ||
      ((start->flags | end->flags) & cudaEventDisableTiming) != 0 || !start->enqueued ||
      !end->enqueued) {
    return Record(cudaErrorInvalidResourceHandle);
  }
  if (!start->recorded || !end->recorded) return Record(cudaErrorNotReady);
  *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (func == nullptr || attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      static_cast<size_t>(value) > jamba::cuda_emu::kOptinSharedBytes) {
    return Record(cudaErrorInvalidValue);
  }
  auto& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  s.kernel_shared_limit[func] = static_cast<size_t>(value);
  return cudaSuccess;
}
