"""The container contract: the environment a task process is started with."""

JOB_ID = "KUBETASK_JOB_ID"
KIND = "KUBETASK_KIND"
PARAMS = "KUBETASK_PARAMS"
PARAMS_FILE = "KUBETASK_PARAMS_FILE"
REDIS_URL = "KUBETASK_REDIS_URL"
# Only on Kubernetes, from a Secret, for KUBETASK_REDIS_URL to name as $(KUBETASK_REDIS_PASSWORD)
REDIS_PASSWORD = "KUBETASK_REDIS_PASSWORD"
ARTIFACTS = "KUBETASK_ARTIFACTS"
# The artifact store when it is object storage (s3://bucket/prefix): the runtime then stages
# inputs into a scratch folder that it gives the kind as KUBETASK_ARTIFACTS, and outputs back
ARTIFACTS_URL = "KUBETASK_ARTIFACTS_URL"
S3_ENDPOINT = "AWS_ENDPOINT_URL"
S3_REGION = "AWS_REGION"
# The object store's time limits, in seconds: a request's whole (metadata, each part of an
# upload), and a download's silence
S3_TIMEOUT = "KUBETASK_S3_TIMEOUT_S"
S3_READ_IDLE = "KUBETASK_S3_READ_IDLE_S"
# The store's credentials: a Secret's keys on Kubernetes, the controller's own env locally
S3_CREDENTIALS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "KUBETASK_S3_CREDENTIALS_DIR",
)
TERMINATION_LOG = "KUBETASK_TERMINATION_LOG"
COMPLETION_INDEX = "JOB_COMPLETION_INDEX"  # set by Kubernetes for Indexed Jobs
COMPLETIONS = "KUBETASK_COMPLETIONS"  # how many workers the job has (its progress averages them)

DEFAULT_TERMINATION_LOG = "/dev/termination-log"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID_PARAMS = 2
EXIT_TERMINATED = 143  # 128 + SIGTERM
