"""The smallest settings that still exercise each method's whole code path (shared by the tests that run
every method)."""
EP = {"iterations": 2, "areas": (0.1,)}
TINY = {"integrated_gradients": {"steps": 2}, "smoothgrad": {"samples": 2}, "rise": {"masks": 10},
        "occlusion": {"window": (8, 56, 56), "strides": (8, 56, 56)},
        "ep3d": EP, "ep3d_evenly": EP, "ep_unsync": {"iterations": 1, "areas": (0.1,)}, "ep3d_temporal_gauss": EP,
        "step": EP, "aosa": {"stride": 56}, "aosa_approx": {"stride": 56}}
