"""Operations: MLflow tracking, monitoring and drift, scheduled jobs, deployment and provisioning.

Built by the monitoring issues; it uses core/ and is never imported by it.
"""
