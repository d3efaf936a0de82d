/*
 * Network interfaces and their ethtool feature bits: what `ethtool -k` shows
 * (tls-hw-tx-offload, esp-hw-offload, ...), read through the SIOCETHTOOL
 * ioctl, which needs no capability and works on every kernel since 2.6.39
 * (ETHTOOL_GFEATURES). Mechanisms only: names and raw bit words go to
 * TypeScript, which picks the features and decides what they mean.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "aludel.h"

/*
 * Feature words asked for: the kernel copies min(this, its own count) blocks
 * and reports its count in `size` (ethtool_get_features in net/ethtool/ioctl.c).
 * Linux has 64 feature bits (netdev_features_t is u64), so 2 words today.
 */
#define FEATURE_WORDS 8

/* One SIOCETHTOOL ioctl on a throw-away datagram socket, as ethtool(8) does; 0 or an errno. */
static int ethtool_ioctl(const char *ifname, void *cmd) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, ifname, strnlen(ifname, IFNAMSIZ - 1)); /* NUL from the memset */
  ifr.ifr_data = cmd;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int rc = ioctl(fd, SIOCETHTOOL, &ifr) == 0 ? 0 : errno;
  close(fd);
  return rc;
}

/* Reads an interface name argument; IFNAMSIZ includes the NUL. */
static bool arg_ifname(napi_env env, napi_value v, char *buf, size_t size) {
  if (!aludel_arg_string(env, v, buf, size)) return false;
  if (strlen(buf) >= IFNAMSIZ || buf[0] == '\0') {
    napi_throw_range_error(env, "ERR_INVALID_ARG", "not an interface name");
    return false;
  }
  return true;
}

/* netInterfaces() -> [{index, name}]: every interface of this network namespace, up or down (if_nameindex(3)). */
static napi_value net_interfaces(napi_env env, napi_callback_info info) {
  struct if_nameindex *list = if_nameindex();
  if (list == NULL) return aludel_throw_errno(env, errno, "if_nameindex");
  napi_value out = NULL;
  napi_create_array(env, &out);
  uint32_t n = 0;
  for (struct if_nameindex *i = list; i->if_index != 0 && i->if_name != NULL; i++) {
    napi_value item = NULL;
    napi_create_object(env, &item);
    napi_set_named_property(env, item, "index", aludel_int(env, i->if_index));
    napi_set_named_property(env, item, "name", aludel_str(env, i->if_name));
    napi_set_element(env, out, n++, item);
  }
  if_freenameindex(list);
  return out;
}

/*
 * ethtoolFeatureNames(ifname) -> string[]: the names of the feature bits, bit i
 * = names[i] (ETH_SS_FEATURES). Two ioctls in one call on purpose:
 * ETHTOOL_GSTRINGS writes as many strings as the kernel has, whatever buffer
 * it is given, so the buffer is sized by the ETHTOOL_GSSET_INFO count taken
 * just before, never by a caller. [] when the kernel has no such string set.
 */
static napi_value ethtool_feature_names(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char ifname[IFNAMSIZ + 1];
  if (!aludel_args(env, info, 1, argv) || !arg_ifname(env, argv[0], ifname, sizeof ifname)) return NULL;
  struct {
    struct ethtool_sset_info hdr;
    uint32_t count;
  } sset;
  memset(&sset, 0, sizeof sset);
  sset.hdr.cmd = ETHTOOL_GSSET_INFO;
  sset.hdr.sset_mask = 1ULL << ETH_SS_FEATURES;
  int err = ethtool_ioctl(ifname, &sset);
  if (err != 0) return aludel_throw_errno(env, err, "ioctl(SIOCETHTOOL, ETHTOOL_GSSET_INFO)");
  napi_value out = NULL;
  napi_create_array(env, &out);
  /* The kernel clears the bit of each set it does not have. */
  if (!(sset.hdr.sset_mask & (1ULL << ETH_SS_FEATURES)) || sset.count == 0) return out;
  uint32_t count = sset.count;
  struct ethtool_gstrings *strings = calloc(1, sizeof *strings + (size_t)count * ETH_GSTRING_LEN);
  if (strings == NULL) return aludel_throw_errno(env, ENOMEM, "calloc");
  strings->cmd = ETHTOOL_GSTRINGS;
  strings->string_set = ETH_SS_FEATURES;
  strings->len = count;
  err = ethtool_ioctl(ifname, strings);
  if (err != 0) {
    free(strings);
    return aludel_throw_errno(env, err, "ioctl(SIOCETHTOOL, ETHTOOL_GSTRINGS)");
  }
  uint32_t got = strings->len < count ? strings->len : count;
  for (uint32_t i = 0; i < got; i++) {
    char name[ETH_GSTRING_LEN + 1];
    memcpy(name, strings->data + (size_t)i * ETH_GSTRING_LEN, ETH_GSTRING_LEN);
    name[ETH_GSTRING_LEN] = '\0';
    napi_set_element(env, out, i, aludel_str(env, name));
  }
  free(strings);
  return out;
}

static napi_value u32_array(napi_env env, const struct ethtool_get_features_block *blocks, uint32_t n, size_t field) {
  napi_value arr = NULL;
  napi_create_array_with_length(env, n, &arr);
  for (uint32_t i = 0; i < n; i++) {
    uint32_t v;
    memcpy(&v, (const char *)&blocks[i] + field, sizeof v);
    napi_value x = NULL;
    napi_create_uint32(env, v, &x);
    napi_set_element(env, arr, i, x);
  }
  return arr;
}

/*
 * ethtoolFeatures(ifname) -> {available, requested, active, neverChanged}: the
 * ETHTOOL_GFEATURES blocks as arrays of 32-bit words (bit i of the whole =
 * word i/32, bit i%32). available = hw_features (the user may toggle),
 * requested = wanted_features, active = features, neverChanged = bits the
 * kernel never lets change (NETIF_F_NEVER_CHANGE).
 */
static napi_value ethtool_features(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char ifname[IFNAMSIZ + 1];
  if (!aludel_args(env, info, 1, argv) || !arg_ifname(env, argv[0], ifname, sizeof ifname)) return NULL;
  struct {
    struct ethtool_gfeatures hdr;
    struct ethtool_get_features_block blocks[FEATURE_WORDS];
  } req;
  memset(&req, 0, sizeof req);
  req.hdr.cmd = ETHTOOL_GFEATURES;
  req.hdr.size = FEATURE_WORDS;
  int err = ethtool_ioctl(ifname, &req);
  if (err != 0) return aludel_throw_errno(env, err, "ioctl(SIOCETHTOOL, ETHTOOL_GFEATURES)");
  uint32_t n = req.hdr.size < FEATURE_WORDS ? req.hdr.size : FEATURE_WORDS;
  napi_value out = NULL;
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "available", u32_array(env, req.blocks, n, offsetof(struct ethtool_get_features_block, available)));
  napi_set_named_property(env, out, "requested", u32_array(env, req.blocks, n, offsetof(struct ethtool_get_features_block, requested)));
  napi_set_named_property(env, out, "active", u32_array(env, req.blocks, n, offsetof(struct ethtool_get_features_block, active)));
  napi_set_named_property(env, out, "neverChanged", u32_array(env, req.blocks, n, offsetof(struct ethtool_get_features_block, never_changed)));
  return out;
}

void aludel_register_ethtool(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"netInterfaces", NULL, net_interfaces, NULL, NULL, NULL, napi_default, NULL},
      {"ethtoolFeatureNames", NULL, ethtool_feature_names, NULL, NULL, NULL, napi_default, NULL},
      {"ethtoolFeatures", NULL, ethtool_features, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
