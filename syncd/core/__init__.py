"""The domain's pure core: values, the plan, the step format, git's naming rules, errors, retries.
No I/O.
"""
