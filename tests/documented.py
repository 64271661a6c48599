"""Bodies copied from the DashScope docs and captures; each § names a section of docs/dashscope.md.

Result URLs point at the scripted server's `/files/result.png` ("{root}" is replaced by it).
"""

RESULT = "{root}/files/result.png?Expires=1700000000&OSSAccessKeyId=x&Signature=y"

SUBMITTED = {  # §Tasks
    "output": {"task_status": "PENDING", "task_id": "0385dc79-5ff8-4d82-bcb6-xxxxxx"},
    "request_id": "4909100c-7b5a-9f92-bfe5-xxxxxx",
}

SYNC_SUCCESS = {  # §Results, a synchronous answer
    "output": {
        "choices": [
            {
                "finish_reason": "stop",
                "message": {"content": [{"image": RESULT, "type": "image"}], "role": "assistant"},
            }
        ],
        "finished": True,
    },
    "usage": {
        "image_count": 1,
        "input_tokens": 0,
        "output_tokens": 0,
        "size": "1280*1280",
        "total_tokens": 0,
    },
    "request_id": "815505c6-7c3d-49d7-b197-xxxxxx",
}

PENDING = {  # §Tasks
    "request_id": "c4f11410-ea42-4996-957d-9c82f9xxxxxx",
    "output": {"task_id": "f470bbfd-d955-4165-935b-d35b8eexxxxxx", "task_status": "PENDING"},
}

RUNNING = {  # §Tasks, a capture
    "request_id": "edbd4e81-d37b-97f1-9857-d7394829dd0f",
    "output": {
        "task_id": "9e2b6ef6-285d-4efa-8651-4dbda7d571fa",
        "task_status": "RUNNING",
        "submit_time": "2024-03-01 17:38:24.817",
        "scheduled_time": "2024-03-01 17:38:24.831",
        "task_metrics": {"TOTAL": 4, "SUCCEEDED": 0, "FAILED": 0},
    },
}

SUCCEEDED_CHOICES = {  # §Results, choices[]
    "request_id": "815505c6-7c3d-49d7-b197-xxxxxx",
    "output": {
        "task_id": "f470bbfd-d955-4165-935b-d35b8exxxxxx",
        "task_status": "SUCCEEDED",
        "choices": [
            {
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": [{"image": RESULT, "type": "image"}]},
            }
        ],
        "finished": True,
        "submit_time": "2026-01-09 17:18:17.901",
        "scheduled_time": "2026-01-09 17:18:17.941",
        "end_time": "2026-01-09 17:18:45.544",
    },
    "usage": {
        "image_count": 1,
        "input_tokens": 0,
        "output_tokens": 0,
        "size": "1280*1280",
        "total_tokens": 0,
    },
}

SUCCEEDED_RESULTS = {  # §Results, results[]
    "request_id": "d1f2a1be-9c58-48af-b43f-xxxxxx",
    "output": {
        "task_id": "7f4836cd-1c47-41b3-b3a4-xxxxxx",
        "task_status": "SUCCEEDED",
        "submit_time": "2025-09-23 22:14:10.800",
        "scheduled_time": "2025-09-23 22:14:10.825",
        "end_time": "2025-09-23 22:15:23.456",
        "results": [
            {
                "orig_prompt": "将花卉连衣裙换成一件复古风格的蕾丝长裙，领口和袖口有精致的刺绣细节。",
                "actual_prompt": "将粉色褶皱连衣裙替换为一件复古风格的蕾丝长裙，…",
                "url": RESULT,
            }
        ],
        "task_metrics": {"TOTAL": 1, "FAILED": 0, "SUCCEEDED": 1},
    },
    "usage": {"image_count": 1},
}

PARTIAL = {  # §Results, partial failure
    "request_id": "85eaba38-0185-99d7-8d16-xxxxxx",
    "output": {
        "task_id": "86ecf553-d340-4e21-af6e-xxxxxx",
        "task_status": "SUCCEEDED",
        "results": [
            {"url": RESULT},
            {
                "code": "InternalError.Timeout",
                "message": "An internal timeout error has occured during execution, please try "
                "again later or contact service support.",
            },
        ],
        "task_metrics": {"TOTAL": 2, "SUCCEEDED": 1, "FAILED": 1},
    },
    "usage": {"image_count": 1},
}

FAILED = {  # §Tasks
    "request_id": "e5d70b02-ebd3-98ce-9fe8-759d7d7b107d",
    "output": {
        "task_id": "86ecf553-d340-4e21-af6e-xxxxxx",
        "task_status": "FAILED",
        "code": "InvalidParameter",
        "message": "xxxxxx",
        "task_metrics": {"TOTAL": 4, "SUCCEEDED": 0, "FAILED": 4},
    },
}

FAILED_MODERATION = {  # §Moderation: every output image blocked
    "request_id": "e5d70b02-ebd3-98ce-9fe8-759d7d7b1000",
    "output": {
        "task_id": "86ecf553-d340-4e21-af6e-000000",
        "task_status": "FAILED",
        "code": "DataInspectionFailed",
        "message": "Output data may contain inappropriate content.",
    },
}

UNKNOWN = {  # §Tasks, a capture
    "request_id": "85c25460-6440-91a7-b14e-2978fe60bd0f",
    "output": {"task_id": "1111", "task_status": "UNKNOWN"},
}

LIST = {  # §Task list
    "total": 2,
    "data": [
        {
            "api_key_id": "15xxxx",
            "caller_parent_id": "xxxxxxxxx",
            "caller_uid": "xxxxxxxxx",
            "gmt_create": 1745568428109,
            "model_name": "wanx2.1-kf2v-plus",
            "region": "ap-southeast-1",
            "request_id": "1abfc3c8-dd25-98da-ad0b-xxxxxx",
            "start_time": 1745568428138,
            "status": "RUNNING",
            "task_id": "50e2ccea-abc4-43d7-a0dc-xxxxxx",
            "user_api_unique_key": "apikey:v1:aigc:image2video:video-synthesis:wanx2.1-kf2v-plus",
        },
        {
            "api_key_id": "15xxxx",
            "caller_parent_id": "xxxxxxxxx",
            "caller_uid": "xxxxxxxxx",
            "end_time": 1745568302481,
            "gmt_create": 1745568293253,
            "model_name": "wanx2.1-t2i-turbo",
            "region": "ap-southeast-1",
            "request_id": "f6bf34d9-bf87-9e8b-9ed4-xxxxxx",
            "start_time": 1745568293273,
            "status": "SUCCEEDED",
            "task_id": "3c777dbc-8cc6-4d80-aa90-xxxxxx",
            "user_api_unique_key": "apikey:v1:aigc:text2image:image-synthesis:wanx2.1-t2i-turbo",
        },
    ],
    "total_page": 1,
    "page_no": 1,
    "request_id": "f6756b7e-d0bb-9b74-813a-xxxxxx",
    "page_size": 10,
}

CANCELLED_OK = {"request_id": "45ac7f13-xxxx-xxxx-xxxx-e03c35068d83"}  # §Cancel

# (HTTP status, code, message) from §Errors with the class each must map to.
ERRORS = [
    (401, "InvalidApiKey", "Invalid API-key provided.", "AuthenticationError"),
    (401, "InvalidApiKey", "No API-key provided.", "AuthenticationError"),
    (
        403,
        "AccessDenied",
        "current user api does not support synchronous calls",
        "PermissionDeniedError",
    ),
    (
        403,
        "AccessDenied.Unpurchased",
        "Access to model denied. Please make sure you are eligible for using the model.",
        "PermissionDeniedError",
    ),
    (403, "Model.AccessDenied", "Model access denied.", "PermissionDeniedError"),
    (
        400,
        "Arrearage",
        "Access denied, please make sure your account is in good standing.",
        "PermissionDeniedError",
    ),
    (
        403,
        "AllocationQuota.FreeTierOnly",
        "The free tier of the model has been exhausted.",
        "PermissionDeniedError",
    ),
    (
        400,
        "InvalidParameter",
        "Required parameter(s) missing or invalid, please check the request parameters.",
        "BadRequestError",
    ),
    (404, "InvalidParameter", "Model not exist.", "BadRequestError"),
    (400, "InvalidParameter", "url error, please check url!", "BadRequestError"),
    (
        400,
        "InvalidParameter.DataInspection",
        "Unable to download the media resource during the data inspection process.",
        "BadRequestError",
    ),
    (400, "InvalidURL", "Invalid URL provided in your request.", "BadRequestError"),
    (
        400,
        "InvalidImageResolution",
        "The input image resolution is too large or small.",
        "BadRequestError",
    ),
    (
        400,
        "InvalidImage.FileFormat",
        "Invalid image type. Please ensure the uploaded file is a valid image.",
        "BadRequestError",
    ),
    (
        400,
        "BadRequest.EmptyModel",
        'Required parameter "model" missing from request.',
        "BadRequestError",
    ),
    (400, "DataInspectionFailed", "Green net check failed for input text", "ContentRejectedError"),
    (400, "DataInspectionFailed", "Green net check failed for input image", "ContentRejectedError"),
    (
        400,
        "DataInspectionFailed",
        "Input data may contain inappropriate content.",
        "ContentRejectedError",
    ),
    (
        400,
        "IPInfringementSuspect",
        "Input data is suspected of being involved in IP infringement.",
        "ContentRejectedError",
    ),
    (404, "ModelNotFound", "Model can not be found.", "NotFoundError"),
    (429, "Throttling", "Requests throttling triggered.", "RateLimitedError"),
    (
        429,
        "Throttling.RateQuota",
        "Requests rate limit exceeded, please try again later.",
        "RateLimitedError",
    ),
    (
        429,
        "Throttling.AllocationQuota",
        "Allocated quota exceeded, please increase your quota limit.",
        "PermissionDeniedError",
    ),
    (429, "PrepaidBillOverdue", "The prepaid bill is overdue.", "PermissionDeniedError"),
    (
        500,
        "InternalError",
        "An internal error has occured, please try again later or contact service support.",
        "ServerError",
    ),
    (500, "InternalError.Algo", "inference internal error.", "ServerError"),
    (500, "RequestTimeOut", "Request timed out, please try again later.", "ServerError"),
    (503, "ModelUnavailable", "Model is unavailable, please try again later.", "ServerError"),
    (
        503,
        "ModelServingError",
        "Too many requests. Your requests are being throttled due to system capacity limits. Please try again later.",
        "ServerError",
    ),
]
