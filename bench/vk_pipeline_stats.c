// What a GPU's Vulkan driver makes of a compute shader: registers, spills, shared memory, as
// the driver reports them through VK_KHR_pipeline_executable_properties (WebGPU exposes none of
// this). Diagnostic of issue 13 (session 27): the SPIR-V comes from Deno's WebGPU (naga) on
// lavapipe, dumped with MESA_SPIRV_DUMP_PATH (bench/dump_spirv.ts), and is compiled here by the
// device's own driver.
//
// Build (needs the Vulkan headers, Debian's libvulkan-dev):
//   gcc -O2 -o vk_pipeline_stats bench/vk_pipeline_stats.c -lvulkan
// Usage: vk_pipeline_stats [--ir=DIR] [--cache=DIR] FILE.spv...
//   Prints each file's executables and their statistics; --ir writes the driver's internal
//   representations (where it offers any) to DIR/<file>.<n>.txt; --cache writes the pipeline
//   cache data of each file's pipeline alone to DIR/<file>.cache (NVIDIA's holds the machine
//   code, which bench/sass_from_cache.py finds and disassembles: session 28).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vulkan/vulkan.h>

#define CHECK(x)                                                   \
  do {                                                             \
    VkResult r_ = (x);                                             \
    if (r_ != VK_SUCCESS) {                                        \
      fprintf(stderr, "%s failed: %d (line %d)\n", #x, r_, __LINE__); \
      exit(1);                                                     \
    }                                                              \
  } while (0)

static uint32_t *read_words(const char *path, size_t *count) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint32_t *w = malloc(n);
  if (fread(w, 1, n, f) != (size_t)n) exit(1);
  fclose(f);
  *count = n / 4;
  return w;
}

// The descriptor bindings of set 0 the shader declares: uniform or storage buffer, by binding.
// SPIR-V: OpDecorate (71) id Binding (33) n / DescriptorSet (34) n; OpVariable (59) type id
// storage-class (Uniform 2, StorageBuffer 12).
enum { MAX_IDS = 1 << 20, MAX_BINDINGS = 32 };
static void bindings_of(const uint32_t *w, size_t n, VkDescriptorType *types, int *present) {
  static int32_t binding[MAX_IDS], set[MAX_IDS];
  memset(binding, -1, sizeof binding);
  memset(set, 0, sizeof set);
  for (size_t i = 5; i < n;) {
    uint32_t op = w[i] & 0xffff, len = w[i] >> 16;
    if (len == 0) break;
    if (op == 71 && len >= 4 && w[i + 1] < MAX_IDS) {
      if (w[i + 2] == 33) binding[w[i + 1]] = w[i + 3];
      if (w[i + 2] == 34) set[w[i + 1]] = w[i + 3];
    }
    i += len;
  }
  for (size_t i = 5; i < n;) {
    uint32_t op = w[i] & 0xffff, len = w[i] >> 16;
    if (op == 59 && len >= 4 && w[i + 2] < MAX_IDS) {
      uint32_t id = w[i + 2], sc = w[i + 3];
      int b = binding[id];
      if (b >= 0 && b < MAX_BINDINGS && set[id] == 0 && (sc == 2 || sc == 12)) {
        present[b] = 1;
        types[b] = sc == 2 ? VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
      }
    }
    i += len;
  }
}

// The name of the module's first entry point (OpEntryPoint, 15: model, id, name...): naga
// keeps the WGSL's `main`, Dawn renames it.
static const char *entry_name(const uint32_t *w, size_t n) {
  for (size_t i = 5; i < n;) {
    uint32_t op = w[i] & 0xffff, len = w[i] >> 16;
    if (len == 0) break;
    if (op == 15 && len >= 4) return (const char *)&w[i + 3];
    i += len;
  }
  return "main";
}

// VK_KHR_shader_maximal_reconvergence (Dawn's SPIR-V asks for it), newer than some headers.
typedef struct {
  VkStructureType sType;
  void *pNext;
  VkBool32 shaderMaximalReconvergence;
} MaximalReconvergenceFeatures;
#define MAXIMAL_RECONVERGENCE_FEATURES_TYPE ((VkStructureType)1000434000)

static int has_extension(VkPhysicalDevice pd, const char *name) {
  uint32_t n = 0;
  vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL);
  VkExtensionProperties *e = calloc(n, sizeof *e);
  vkEnumerateDeviceExtensionProperties(pd, NULL, &n, e);
  int found = 0;
  for (uint32_t i = 0; i < n; i++) found |= strcmp(e[i].extensionName, name) == 0;
  free(e);
  return found;
}

static void print_value(const VkPipelineExecutableStatisticKHR *s) {
  switch (s->format) {
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR:
      printf("%s", s->value.b32 ? "true" : "false");
      break;
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR:
      printf("%lld", (long long)s->value.i64);
      break;
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR:
      printf("%llu", (unsigned long long)s->value.u64);
      break;
    default:
      printf("%g", s->value.f64);
  }
}

// The pipeline cache's data, to DIR/<base name of spv>.cache.
static void write_cache(VkDevice dev, VkPipelineCache cache, const char *dir, const char *spv) {
  size_t size = 0;
  CHECK(vkGetPipelineCacheData(dev, cache, &size, NULL));
  void *data = malloc(size);
  CHECK(vkGetPipelineCacheData(dev, cache, &size, data));
  const char *base = strrchr(spv, '/');
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.cache", dir, base ? base + 1 : spv);
  FILE *f = fopen(path, "wb");
  if (f) {
    fwrite(data, 1, size, f);
    fclose(f);
  }
  printf("cache: %s (%zu bytes)\n", path, size);
  free(data);
  vkDestroyPipelineCache(dev, cache, NULL);
}

int main(int argc, char **argv) {
  const char *ir_dir = NULL, *cache_dir = NULL;
  int first = 1;
  for (; first < argc && strncmp(argv[first], "--", 2) == 0; first++) {
    if (strncmp(argv[first], "--ir=", 5) == 0) ir_dir = argv[first] + 5;
    if (strncmp(argv[first], "--cache=", 8) == 0) cache_dir = argv[first] + 8;
  }
  VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                           .apiVersion = VK_API_VERSION_1_3};
  VkInstanceCreateInfo ici = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                              .pApplicationInfo = &app};
  VkInstance inst;
  CHECK(vkCreateInstance(&ici, NULL, &inst));
  uint32_t ndev = 8;
  VkPhysicalDevice devs[8];
  CHECK(vkEnumeratePhysicalDevices(inst, &ndev, devs));
  if (ndev == 0) {
    fprintf(stderr, "no Vulkan device\n");
    return 1;
  }
  VkPhysicalDevice pd = devs[0];
  VkPhysicalDeviceProperties props;
  vkGetPhysicalDeviceProperties(pd, &props);
  printf("device: %s (driver %u)\n", props.deviceName, props.driverVersion);

  // Every feature the device has (the SPIR-V may use f16, subgroups, ...), plus executable info.
  const char *reconverge = "VK_KHR_shader_maximal_reconvergence";
  int has_reconverge = has_extension(pd, reconverge);
  MaximalReconvergenceFeatures mr = {.sType = MAXIMAL_RECONVERGENCE_FEATURES_TYPE};
  VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR exe = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR,
      .pNext = has_reconverge ? &mr : NULL};
  VkPhysicalDeviceVulkan13Features f13 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES, .pNext = &exe};
  VkPhysicalDeviceVulkan12Features f12 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, .pNext = &f13};
  VkPhysicalDeviceVulkan11Features f11 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, .pNext = &f12};
  VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                  .pNext = &f11};
  vkGetPhysicalDeviceFeatures2(pd, &f2);
  if (!exe.pipelineExecutableInfo) {
    fprintf(stderr, "the driver offers no pipeline executable info\n");
    return 1;
  }
  float prio = 1.0f;
  VkDeviceQueueCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                 .queueFamilyIndex = 0,
                                 .queueCount = 1,
                                 .pQueuePriorities = &prio};
  const char *exts[] = {VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME, reconverge};
  VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                            .pNext = &f2,
                            .queueCreateInfoCount = 1,
                            .pQueueCreateInfos = &qci,
                            .enabledExtensionCount = has_reconverge ? 2 : 1,
                            .ppEnabledExtensionNames = exts};
  VkDevice dev;
  CHECK(vkCreateDevice(pd, &dci, NULL, &dev));
  PFN_vkGetPipelineExecutablePropertiesKHR get_props =
      (PFN_vkGetPipelineExecutablePropertiesKHR)vkGetDeviceProcAddr(
          dev, "vkGetPipelineExecutablePropertiesKHR");
  PFN_vkGetPipelineExecutableStatisticsKHR get_stats =
      (PFN_vkGetPipelineExecutableStatisticsKHR)vkGetDeviceProcAddr(
          dev, "vkGetPipelineExecutableStatisticsKHR");
  PFN_vkGetPipelineExecutableInternalRepresentationsKHR get_ir =
      (PFN_vkGetPipelineExecutableInternalRepresentationsKHR)vkGetDeviceProcAddr(
          dev, "vkGetPipelineExecutableInternalRepresentationsKHR");

  for (int a = first; a < argc; a++) {
    size_t n;
    uint32_t *words = read_words(argv[a], &n);
    VkDescriptorType types[MAX_BINDINGS];
    int present[MAX_BINDINGS] = {0};
    bindings_of(words, n, types, present);
    VkDescriptorSetLayoutBinding lb[MAX_BINDINGS];
    uint32_t nb = 0;
    for (int b = 0; b < MAX_BINDINGS; b++) {
      if (!present[b]) continue;
      lb[nb++] = (VkDescriptorSetLayoutBinding){.binding = b,
                                                .descriptorType = types[b],
                                                .descriptorCount = 1,
                                                .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
    }
    VkDescriptorSetLayoutCreateInfo dl = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = nb,
        .pBindings = lb};
    VkDescriptorSetLayout dsl;
    CHECK(vkCreateDescriptorSetLayout(dev, &dl, NULL, &dsl));
    VkPipelineLayoutCreateInfo pl = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                     .setLayoutCount = 1,
                                     .pSetLayouts = &dsl};
    VkPipelineLayout layout;
    CHECK(vkCreatePipelineLayout(dev, &pl, NULL, &layout));
    VkShaderModuleCreateInfo smi = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                    .codeSize = n * 4,
                                    .pCode = words};
    VkShaderModule sm;
    CHECK(vkCreateShaderModule(dev, &smi, NULL, &sm));
    VkComputePipelineCreateInfo cpi = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .flags = VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR |
                 (ir_dir ? VK_PIPELINE_CREATE_CAPTURE_INTERNAL_REPRESENTATIONS_BIT_KHR : 0),
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = sm,
                  .pName = entry_name(words, n)},
        .layout = layout};
    // A cache of its own per pipeline, so its data holds this one kernel's code.
    VkPipelineCache cache = VK_NULL_HANDLE;
    if (cache_dir) {
      VkPipelineCacheCreateInfo pcc = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
      CHECK(vkCreatePipelineCache(dev, &pcc, NULL, &cache));
    }
    VkPipeline pipe;
    CHECK(vkCreateComputePipelines(dev, cache, 1, &cpi, NULL, &pipe));
    if (cache_dir) write_cache(dev, cache, cache_dir, argv[a]);
    VkPipelineInfoKHR pi = {.sType = VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR, .pipeline = pipe};
    uint32_t nexe = 0;
    CHECK(get_props(dev, &pi, &nexe, NULL));
    VkPipelineExecutablePropertiesKHR ep[8];
    if (nexe > 8) nexe = 8;
    for (uint32_t i = 0; i < nexe; i++) {
      ep[i] = (VkPipelineExecutablePropertiesKHR){
          .sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_PROPERTIES_KHR};
    }
    CHECK(get_props(dev, &pi, &nexe, ep));
    for (uint32_t e = 0; e < nexe; e++) {
      printf("%s [%s, subgroup %u]:", argv[a], ep[e].name, ep[e].subgroupSize);
      VkPipelineExecutableInfoKHR ei = {.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR,
                                        .pipeline = pipe,
                                        .executableIndex = e};
      uint32_t ns = 0;
      CHECK(get_stats(dev, &ei, &ns, NULL));
      VkPipelineExecutableStatisticKHR *st = calloc(ns, sizeof *st);
      for (uint32_t i = 0; i < ns; i++) {
        st[i].sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR;
      }
      CHECK(get_stats(dev, &ei, &ns, st));
      for (uint32_t i = 0; i < ns; i++) {
        printf(" %s=", st[i].name);
        print_value(&st[i]);
        printf(";");
      }
      printf("\n");
      free(st);
      if (!ir_dir) continue;
      uint32_t nir = 0;
      CHECK(get_ir(dev, &ei, &nir, NULL));
      VkPipelineExecutableInternalRepresentationKHR *ir = calloc(nir, sizeof *ir);
      for (uint32_t i = 0; i < nir; i++) {
        ir[i].sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INTERNAL_REPRESENTATION_KHR;
      }
      CHECK(get_ir(dev, &ei, &nir, ir));
      for (uint32_t i = 0; i < nir; i++) ir[i].pData = calloc(ir[i].dataSize + 1, 1);
      CHECK(get_ir(dev, &ei, &nir, ir));
      for (uint32_t i = 0; i < nir; i++) {
        const char *base = strrchr(argv[a], '/');
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.%u.%u.txt", ir_dir, base ? base + 1 : argv[a], e, i);
        FILE *f = fopen(path, "wb");
        if (f) {
          fprintf(f, "// %s: %s\n", ir[i].name, ir[i].description);
          fwrite(ir[i].pData, 1, ir[i].isText ? strlen(ir[i].pData) : ir[i].dataSize, f);
          fclose(f);
        }
        printf("  ir %u: %s (%zu bytes%s)\n", i, ir[i].name, ir[i].dataSize,
               ir[i].isText ? ", text" : "");
        free(ir[i].pData);
      }
      free(ir);
    }
    vkDestroyPipeline(dev, pipe, NULL);
    vkDestroyShaderModule(dev, sm, NULL);
    vkDestroyPipelineLayout(dev, layout, NULL);
    vkDestroyDescriptorSetLayout(dev, dsl, NULL);
    free(words);
  }
  vkDestroyDevice(dev, NULL);
  vkDestroyInstance(inst, NULL);
  return 0;
}
