"""Chameleon provisioning as code: reserve, launch, install and tear down IMP on Chameleon Cloud.

``python -m ops.chameleon up|down|status PLAN`` (or ``imp-provision``). The plan (plan.py) says what to
reserve and install; steps.py runs the idempotent steps; cloud.py is the only module that calls
python-chi; remote.py reaches the servers over ssh.
"""
