"""cc_test run twice: on the CPU backend and on cpu_guarded (model/ops/cpu_guarded)."""

def backend_cc_test(name, env = {}, size = "small", guarded_size = "large", **kwargs):
    """`name` on the default backend and `name`_guarded with GRPO_TEST_BACKEND=cpu_guarded.

    The test chooses its backend with BackendForTests(); under cpu_guarded any host access to
    device memory crashes, which is what the _guarded variant proves absent.
    """
    native.cc_test(name = name, env = env, size = size, **kwargs)
    guarded_env = dict(env)
    guarded_env["GRPO_TEST_BACKEND"] = "cpu_guarded"
    native.cc_test(name = name + "_guarded", env = guarded_env, size = guarded_size, **kwargs)
