"""User-facing text in English and Simplified Chinese.

Every message a user can see is a key in `MESSAGES` with both languages; `text()` formats one.
Discord locales such as `zh-CN` and `zh-TW` map to Chinese, everything else to English.
"""

from __future__ import annotations

from typing import Literal

Lang = Literal["en", "zh"]

MESSAGES: dict[str, dict[Lang, str]] = {
    # --- DashScope errors -------------------------------------------------------------------
    "error.authentication": {
        "en": "The bot's DashScope API key was refused. The operator must check the key and that "
        "it belongs to the configured region.",
        "zh": "DashScope 拒绝了机器人的 API Key。请运营者检查密钥是否正确、是否属于所配置的地域。",
    },
    "error.permission": {
        "en": "The DashScope account may not use this model right now (access or billing). "
        "The operator must check the account.",
        "zh": "DashScope 账号当前无权使用该模型（权限或欠费）。请运营者检查账号状态。",
    },
    "error.bad_request": {
        "en": "DashScope refused the request as invalid: {detail}",
        "zh": "DashScope 认为请求无效：{detail}",
    },
    "error.not_found": {
        "en": "DashScope does not know this model or resource: {detail}",
        "zh": "DashScope 找不到该模型或资源：{detail}",
    },
    "error.content.input_text": {
        "en": "The prompt was blocked by content moderation. Rephrase it and try again.",
        "zh": "提示词未通过内容审核，请修改后重试。",
    },
    "error.content.input_image": {
        "en": "An input image was blocked by content moderation. Use a different image.",
        "zh": "输入图片未通过内容审核，请换一张图片。",
    },
    "error.content.output": {
        "en": "The generated image was blocked by content moderation. Try a different prompt.",
        "zh": "生成的图片未通过内容审核，请换个提示词再试。",
    },
    "error.content.unknown": {
        "en": "The request was blocked by content moderation. Change the prompt or the images.",
        "zh": "请求未通过内容审核，请修改提示词或图片。",
    },
    "error.content.ip": {
        "en": "The request looks like it involves copyrighted characters or brands. "
        "Describe something original instead.",
        "zh": "请求疑似涉及知识产权（版权角色或品牌），请换成原创的描述。",
    },
    "error.rate_limited": {
        "en": "DashScope is busy (rate limit). Please try again in a minute.",
        "zh": "DashScope 繁忙（触发限流），请稍后再试。",
    },
    "error.server": {
        "en": "DashScope had an internal problem. Please try again later.",
        "zh": "DashScope 服务内部出错，请稍后再试。",
    },
    "error.task_failed": {
        "en": "The image task failed at DashScope ({code}). Nothing was charged for it.",
        "zh": "DashScope 图像任务失败（{code}），不会为此计费。",
    },
    "error.task_expired": {
        "en": "The task is no longer known to DashScope (tasks expire after 24 hours).",
        "zh": "DashScope 已查不到该任务（任务 24 小时后过期）。",
    },
    "error.connection": {
        "en": "Could not reach DashScope. Please try again later.",
        "zh": "无法连接 DashScope，请稍后再试。",
    },
    "error.outcome_unknown": {
        "en": "The connection to DashScope broke after the request was sent, so it is unknown "
        "whether the task was created. It was not resent, to avoid paying twice.",
        "zh": "请求发出后与 DashScope 的连接中断，无法确认任务是否已创建。为避免重复计费，未自动重发。",
    },
    "error.bad_response": {
        "en": "DashScope sent an answer the bot could not read.",
        "zh": "DashScope 返回了无法解析的响应。",
    },
    "error.download": {
        "en": "A result image could not be downloaded: {detail}",
        "zh": "无法下载结果图片：{detail}",
    },
    # --- validation of a request -----------------------------------------------------------
    "invalid.model": {
        "en": "Unknown model `{model}`. Choose one of: {choices}.",
        "zh": "未知模型 `{model}`。可选：{choices}。",
    },
    "invalid.model_not_edit": {
        "en": "`{model}` cannot edit images. Use one of: {choices}.",
        "zh": "`{model}` 不能编辑图片。可选：{choices}。",
    },
    "invalid.model_not_text": {
        "en": "`{model}` cannot make images from text. Use one of: {choices}.",
        "zh": "`{model}` 不能根据文字生成图片。可选：{choices}。",
    },
    "invalid.sync_unsupported": {
        "en": "`{model}` has no synchronous mode. Leave out the sync option.",
        "zh": "`{model}` 不支持同步调用，请去掉同步选项。",
    },
    "invalid.prompt_empty": {
        "en": "The prompt is empty. Describe the image you want.",
        "zh": "提示词为空，请描述你想要的图片。",
    },
    "invalid.prompt_long": {
        "en": "The prompt is {length} characters; {model} accepts at most {limit}. Shorten it.",
        "zh": "提示词有 {length} 个字符，{model} 最多接受 {limit} 个，请缩短。",
    },
    "invalid.negative_long": {
        "en": "The negative prompt is {length} characters; at most {limit} are allowed. "
        "Shorten it.",
        "zh": "反向提示词有 {length} 个字符，最多 {limit} 个，请缩短。",
    },
    "invalid.control_chars.prompt": {
        "en": "The prompt contains control characters. Remove them.",
        "zh": "提示词中含有控制字符，请删除。",
    },
    "invalid.control_chars.negative_prompt": {
        "en": "The negative prompt contains control characters. Remove them.",
        "zh": "反向提示词中含有控制字符，请删除。",
    },
    "invalid.size_format": {
        "en": "Size `{size}` is not WIDTH*HEIGHT (for example 1280*1280).",
        "zh": "尺寸 `{size}` 格式不对，应为 宽*高（例如 1280*1280）。",
    },
    "invalid.size_pixels": {
        "en": "Size {size} has {pixels:,} pixels; {model} needs between {low:,} and {high:,}. "
        "Try one of: {recommended}.",
        "zh": "尺寸 {size} 共 {pixels:,} 像素，{model} 要求在 {low:,} 到 {high:,} 之间。"
        "可用：{recommended}。",
    },
    "invalid.size_ratio": {
        "en": "Size {size} is too narrow or too wide; the aspect ratio must be between 1:4 and "
        "4:1. Try one of: {recommended}.",
        "zh": "尺寸 {size} 过窄或过宽，宽高比须在 1:4 到 4:1 之间。可用：{recommended}。",
    },
    "invalid.size_sides": {
        "en": "Size {size}: each side must be between {low} and {high} pixels for {model}. "
        "Try one of: {recommended}.",
        "zh": "尺寸 {size}：{model} 要求每边在 {low} 到 {high} 像素之间。可用：{recommended}。",
    },
    "invalid.n": {
        "en": "Number of images must be between {low} and {high} (got {n}).",
        "zh": "图片数量须在 {low} 到 {high} 之间（当前 {n}）。",
    },
    "invalid.seed": {
        "en": "Seed must be a whole number between 0 and 2147483647 (got {seed}).",
        "zh": "种子须为 0 到 2147483647 之间的整数（当前 {seed}）。",
    },
    "invalid.image_count": {
        "en": "{model} takes {low} to {high} images (got {count}).",
        "zh": "{model} 需要 {low} 到 {high} 张图片（当前 {count} 张）。",
    },
    "invalid.images_unexpected": {
        "en": "{model} makes images from text only; use an edit model to change images.",
        "zh": "{model} 只能根据文字生成图片；修改图片请使用编辑模型。",
    },
    # --- input images ------------------------------------------------------------------------
    "image.empty": {
        "en": "Image {index} is an empty file.",
        "zh": "第 {index} 张图片是空文件。",
    },
    "image.too_many_bytes": {
        "en": "Image {index} is {size_mb:.1f} MB; the limit is {limit_mb:.0f} MB. "
        "Use a smaller file.",
        "zh": "第 {index} 张图片有 {size_mb:.1f} MB，上限为 {limit_mb:.0f} MB，请换一个更小的文件。",
    },
    "image.unreadable": {
        "en": "Image {index} is not a readable image. Use a JPEG, PNG, WEBP, BMP or GIF file.",
        "zh": "第 {index} 张图片无法识别，请使用 JPEG、PNG、WEBP、BMP 或 GIF 文件。",
    },
    "image.format": {
        "en": "Image {index} is {format}, which is not supported. Use JPEG, PNG, WEBP, BMP or GIF.",
        "zh": "第 {index} 张图片是 {format} 格式，不受支持，请使用 JPEG、PNG、WEBP、BMP 或 GIF。",
    },
    "image.bomb": {
        "en": "Image {index} claims {pixels:,} pixels, too many to open safely. "
        "Use an image under 40 megapixels.",
        "zh": "第 {index} 张图片声称有 {pixels:,} 像素，过大无法安全打开，请使用 4000 万像素以下的图片。",
    },
    "image.too_small": {
        "en": "Image {index} is {width}×{height} px; each side must be at least {min_side} px. "
        "Use a larger image.",
        "zh": "第 {index} 张图片为 {width}×{height} 像素，每边至少需要 {min_side} 像素，请换一张更大的图片。",
    },
    "image.too_thin": {
        "en": "Image {index} is {width}×{height} px: too long and thin to fit {min_side}–{max_side} "
        "px per side. Crop it closer to a square.",
        "zh": "第 {index} 张图片为 {width}×{height} 像素，过于细长，无法让每边都在 {min_side}–{max_side} "
        "像素之间，请裁剪得接近方形。",
    },
    "image.fetch": {
        "en": "Image {index} could not be fetched: {detail}",
        "zh": "无法获取第 {index} 张图片：{detail}",
    },
    # --- quota -------------------------------------------------------------------------------
    "quota.cooldown": {
        "en": "Slow down a little: one job every {allowed} s. You can start the next one {when}.",
        "zh": "请稍等：每 {allowed} 秒只能提交一个任务。{when}后可以再提交。",
    },
    "quota.concurrent": {
        "en": "You already have {used} jobs running (the limit is {allowed}). Wait for one to "
        "finish, or cancel one with /cancel.",
        "zh": "你已有 {used} 个任务在进行（上限 {allowed} 个）。请等待其中一个完成，或用 /cancel 取消。",
    },
    "quota.user_day": {
        "en": "You have used {used} of your {allowed} images for the last 24 hours. "
        "More free up {when}.",
        "zh": "过去 24 小时你已使用 {used} 张图片（上限 {allowed} 张）。{when}后会释放额度。",
    },
    "quota.guild_day": {
        "en": "This server has used {used} of its {allowed} images for the last 24 hours. "
        "More free up {when}.",
        "zh": "本服务器过去 24 小时已使用 {used} 张图片（上限 {allowed} 张）。{when}后会释放额度。",
    },
    "quota.budget": {
        "en": "This server has spent {used:.2f} of its monthly budget of {allowed:.2f}. "
        "The budget renews {when}.",
        "zh": "本服务器本月已用 {used:.2f}，月度预算为 {allowed:.2f}。预算将于{when}重置。",
    },
    # --- server policy ---------------------------------------------------------------------
    "policy.channel": {
        "en": "Images can't be made in this channel here. Use one of: {channels}.",
        "zh": "本服务器不允许在此频道生成图片。请使用：{channels}。",
    },
    "policy.model": {
        "en": "This server does not allow `{model}`. Allowed: {models}.",
        "zh": "本服务器不允许使用 `{model}`。允许的模型：{models}。",
    },
    "policy.max_n": {
        "en": "You can make at most {max_n} image(s) at a time here.",
        "zh": "在本服务器每次最多生成 {max_n} 张图片。",
    },
    "policy.nsfw_only": {
        "en": "This server allows image generation only in age-restricted (NSFW) channels.",
        "zh": "本服务器只允许在年龄限制（NSFW）频道中生成图片。",
    },
    "policy.no_nsfw": {
        "en": "This server does not allow image generation in age-restricted (NSFW) channels.",
        "zh": "本服务器不允许在年龄限制（NSFW）频道中生成图片。",
    },
    # --- admin -----------------------------------------------------------------------------
    "admin.bad_value": {
        "en": "`{value}` is not a valid value for {setting}: expected {expected}.",
        "zh": "`{value}` 不是 {setting} 的有效值：应为 {expected}。",
    },
    "admin.unknown_setting": {
        "en": "There is no setting `{setting}`. Settings: {choices}.",
        "zh": "没有名为 `{setting}` 的设置。可用设置：{choices}。",
    },
    "admin.expected.number": {
        "en": "a whole number from {low} to {high}",
        "zh": "{low} 到 {high} 之间的整数",
    },
    "admin.expected.number_unlimited": {
        "en": "a whole number from {low} to {high} (0 = no limit)",
        "zh": "{low} 到 {high} 之间的整数（0 = 不限）",
    },
    "admin.expected.money": {
        "en": "an amount from {low} to {high} (0 = no budget)",
        "zh": "{low} 到 {high} 之间的金额（0 = 不设预算）",
    },
    "admin.expected.yes_no": {"en": "yes or no", "zh": "yes 或 no"},
    "admin.expected.one_of": {"en": "one of {choices}", "zh": "{choices} 之一"},
    "admin.expected.models": {
        "en": "model names from: {models}",
        "zh": "{models} 中的一个或多个模型名称",
    },
    "admin.expected.model": {
        "en": "one model name from: {models}",
        "zh": "{models} 中的一个模型名称",
    },
    "admin.expected.size": {"en": "WIDTH*HEIGHT, e.g. 1280*1280", "zh": "宽*高，例如 1280*1280"},
    "admin.expected.size_fit": {
        "en": "a size some text-to-image model accepts, e.g. 1280*1280",
        "zh": "某个文生图模型支持的尺寸，例如 1280*1280",
    },
    "admin.expected.channels": {
        "en": "channel mentions or ids, e.g. #art",
        "zh": "频道提及或频道 ID，例如 #art",
    },
    "admin.expected.channel": {
        "en": "one channel mention or id, e.g. #art",
        "zh": "一个频道提及或频道 ID，例如 #art",
    },
    "admin.role_only": {
        "en": "{setting} is set for a role only: choose the role.",
        "zh": "{setting} 只能按身份组设置，请选择身份组。",
    },
    "admin.no_role_override": {
        "en": "{setting} applies to the whole server; it can't be set for a role.",
        "zh": "{setting} 作用于整个服务器，不能按身份组设置。",
    },
    "admin.not_allowed": {
        "en": "Only members with the Manage Server permission can change the bot's settings.",
        "zh": "只有拥有“管理服务器”权限的成员才能修改机器人设置。",
    },
    "admin.set": {
        "en": "{setting}{scope}: {old} → {new}.",
        "zh": "{setting}{scope}：{old} → {new}。",
    },
    "admin.reset": {
        "en": "{setting}{scope} reset (was {old}); it now follows {source}.",
        "zh": "{setting}{scope} 已重置（原为 {old}），现在沿用{source}。",
    },
    "admin.source.default": {"en": "the bot's default", "zh": "机器人默认值"},
    "admin.source.server": {"en": "the server's value", "zh": "服务器设置"},
    "admin.limits_title": {"en": "Settings of this server", "zh": "本服务器的设置"},
    "admin.audit_title": {"en": "Latest setting changes", "zh": "最近的设置变更"},
    "admin.audit_empty": {"en": "No setting has been changed yet.", "zh": "尚未修改过任何设置。"},
    "admin.usage_title": {"en": "Usage: {period}", "zh": "用量：{period}"},
    "admin.usage_line": {
        "en": "{images} images · {done} done, {failed} failed, {cancelled} cancelled · "
        "about {cost:.2f} {currency}",
        "zh": "{images} 张图片 · 完成 {done}、失败 {failed}、取消 {cancelled} · 约 {cost:.2f} {currency}",
    },
    "admin.usage_top": {"en": "Top members", "zh": "用量最多的成员"},
    "admin.period.today": {"en": "today", "zh": "今天"},
    "admin.period.7d": {"en": "the last 7 days", "zh": "最近 7 天"},
    "admin.period.30d": {"en": "the last 30 days", "zh": "最近 30 天"},
    "admin.period.this month": {"en": "this month", "zh": "本月"},
    "admin.audit_post": {
        "en": "⚙️ {user} changed {setting}{scope}: {old} → {new}",
        "zh": "⚙️ {user} 修改了 {setting}{scope}：{old} → {new}",
    },
    # --- jobs ----------------------------------------------------------------------------------
    "job.cancel.not_found": {
        "en": "There is no job #{job_id}.",
        "zh": "没有编号为 #{job_id} 的任务。",
    },
    "job.cancel.not_yours": {
        "en": "Job #{job_id} is not yours: only its owner or a member with Manage Messages in this server can cancel it.",
        "zh": "任务 #{job_id} 不是你的：只有发起者或在本服务器拥有“管理消息”权限的成员可以取消。",
    },
    "job.cancel.finished": {
        "en": "Job #{job_id} has already ended ({state}).",
        "zh": "任务 #{job_id} 已经结束（{state}）。",
    },
    "job.cancel.running": {
        "en": "Job #{job_id} is already being drawn by DashScope and cannot be stopped; "
        "it will finish shortly.",
        "zh": "任务 #{job_id} 已在 DashScope 生成中，无法中止，很快就会完成。",
    },
    "job.cancel.failed": {
        "en": "Job #{job_id} could not be cancelled right now ({detail}). Try again in a moment.",
        "zh": "任务 #{job_id} 暂时无法取消（{detail}），请稍后再试。",
    },
    "job.cancel.done": {
        "en": "Job #{job_id} was cancelled; its images were refunded.",
        "zh": "任务 #{job_id} 已取消，额度已退回。",
    },
    "job.not_shown": {
        "en": "The bot restarted just as it accepted your request and could not show it again, "
        "so it was dropped. Nothing was charged; try again.",
        "zh": "机器人在接受你的请求时重启，且无法重新显示该任务，因此已放弃。未计费，请重试。",
    },
    "job.interrupted": {
        "en": "The bot restarted while this image was being drawn, so it was lost. "
        "Nothing was charged; try again.",
        "zh": "生成过程中机器人重启，结果丢失。未计费，请重试。",
    },
    "job.delivery_failed": {
        "en": "The images were made but could not be delivered: {detail}. Nothing was charged.",
        "zh": "图片已生成但无法发送：{detail}。未计费。",
    },
    # --- Discord: status messages ---------------------------------------------------------
    "status.queued": {
        "en": "⏳ Queued — position {position} in line.",
        "zh": "⏳ 排队中 — 第 {position} 位。",
    },
    "status.queued_unknown": {"en": "⏳ Queued.", "zh": "⏳ 排队中。"},
    "status.submitted": {
        "en": "📨 Sent to DashScope; waiting for a free slot.",
        "zh": "📨 已提交到 DashScope，等待空闲通道。",
    },
    "status.running": {
        "en": "🎨 Drawing… {elapsed} s so far, about {eta} s to go.",
        "zh": "🎨 生成中… 已用 {elapsed} 秒，预计还需约 {eta} 秒。",
    },
    "status.running_late": {
        "en": "🎨 Drawing… {elapsed} s so far; taking longer than usual.",
        "zh": "🎨 生成中… 已用 {elapsed} 秒，比平时慢一些。",
    },
    "status.delivering": {"en": "📦 Finishing up…", "zh": "📦 即将完成…"},
    "status.done": {
        "en": "✅ Done: {count} image(s) in {seconds} s.",
        "zh": "✅ 完成：{count} 张图片，用时 {seconds} 秒。",
    },
    "status.failed": {"en": "❌ {message}", "zh": "❌ {message}"},
    "status.cancelled": {
        "en": "🚫 Cancelled. Nothing was charged.",
        "zh": "🚫 已取消，未计费。",
    },
    "status.header": {
        "en": "**Job #{job_id}** by {user} · {model}",
        "zh": "**任务 #{job_id}** · {user} · {model}",
    },
    "status.simulated": {
        "en": "(simulated: no DashScope key is configured)",
        "zh": "（模拟结果：未配置 DashScope 密钥）",
    },
    # --- Discord: results ---------------------------------------------------------------------
    "result.title": {"en": "Job #{job_id}", "zh": "任务 #{job_id}"},
    "result.prompt": {"en": "Prompt", "zh": "提示词"},
    "result.actual_prompt": {"en": "Actual prompt", "zh": "实际提示词"},
    "result.negative_prompt": {"en": "Negative prompt", "zh": "反向提示词"},
    "result.seed": {"en": "Seed", "zh": "种子"},
    "result.size": {"en": "Size", "zh": "尺寸"},
    "result.model": {"en": "Model", "zh": "模型"},
    "result.duration": {"en": "Time", "zh": "用时"},
    "result.images": {"en": "Images", "zh": "图片"},
    "result.request_ids": {"en": "Request ids", "zh": "请求 ID"},
    "result.task_id": {"en": "Task id", "zh": "任务 ID"},
    "result.failed_images": {
        "en": "{count} image(s) could not be made and were not charged.",
        "zh": "{count} 张图片生成失败，未计费。",
    },
    "result.reencoded": {
        "en": "Images were re-encoded as JPEG to fit this server's upload limit.",
        "zh": "为符合本服务器的上传上限，图片已转为 JPEG。",
    },
    "button.reroll": {"en": "Reroll", "zh": "重新生成"},
    "button.edit": {"en": "Edit", "zh": "编辑"},
    "button.info": {"en": "Info", "zh": "详情"},
    "button.delete": {"en": "Delete", "zh": "删除"},
    "button.cancel": {"en": "Cancel", "zh": "取消"},
    # --- Discord: checks before a command runs -------------------------------------------------
    "check.missing_permissions": {
        "en": "You need the {permissions} permission(s) here to use this command.",
        "zh": "你需要在这里拥有以下权限才能使用此命令：{permissions}。",
    },
    "check.bot_missing_permissions": {
        "en": "I can't do that in this channel: I need the {permissions} permission(s) here.",
        "zh": "我无法在此频道执行该操作：我需要以下权限：{permissions}。",
    },
    "check.guild_only": {
        "en": "This command works in servers only.",
        "zh": "此命令只能在服务器中使用。",
    },
    "check.cooldown": {
        "en": "This command is cooling down; you can use it again {when}.",
        "zh": "此命令正在冷却，{when}可以再次使用。",
    },
    "check.missing_role": {
        "en": "You need the {role} role to use this command.",
        "zh": "你需要 {role} 身份组才能使用此命令。",
    },
    "check.missing_any_role": {
        "en": "You need one of these roles to use this command: {roles}.",
        "zh": "你需要以下身份组之一才能使用此命令：{roles}。",
    },
    "check.failed": {
        "en": "You can't use this command here.",
        "zh": "你不能在这里使用此命令。",
    },
    "check.separator": {"en": ", ", "zh": "、"},
    "permission.administrator": {"en": "Administrator", "zh": "管理员"},
    "permission.manage_guild": {"en": "Manage Server", "zh": "管理服务器"},
    "permission.manage_messages": {"en": "Manage Messages", "zh": "管理消息"},
    "permission.view_channel": {"en": "View Channel", "zh": "查看频道"},
    "permission.send_messages": {"en": "Send Messages", "zh": "发送消息"},
    "permission.send_messages_in_threads": {
        "en": "Send Messages in Threads",
        "zh": "在子区中发送消息",
    },
    "permission.create_public_threads": {"en": "Create Public Threads", "zh": "创建公开子区"},
    "permission.attach_files": {"en": "Attach Files", "zh": "附加文件"},
    "permission.embed_links": {"en": "Embed Links", "zh": "嵌入链接"},
    "permission.read_message_history": {"en": "Read Message History", "zh": "阅读消息历史记录"},
    # --- Discord: replies ---------------------------------------------------------------------
    "reply.queued": {
        "en": "Job #{job_id} is queued: {link}",
        "zh": "任务 #{job_id} 已加入队列：{link}",
    },
    "reply.no_images": {
        "en": "That message has no images I can edit. Attach or reply to a JPEG, PNG, WEBP, BMP "
        "or GIF.",
        "zh": "该消息中没有可编辑的图片。请附上或回复一张 JPEG、PNG、WEBP、BMP 或 GIF 图片。",
    },
    "reply.too_many_images": {
        "en": "At most 3 images can be edited together; you chose {count}. Choose 3 or fewer, "
        "for example 1-3.",
        "zh": "最多同时编辑 3 张图片，你选择了 {count} 张。请选择不超过 3 张，例如 1-3。",
    },
    "reply.bad_image_choice": {
        "en": "Choose images by number between 1 and {count}, for example 1 or 1,2.",
        "zh": "请用 1 到 {count} 之间的编号选择图片，例如 1 或 1,2。",
    },
    "modal.images": {"en": "Which images (numbers)", "zh": "使用哪几张图片（编号）"},
    "reply.not_image_file": {
        "en": "`{filename}` is not an image. Attach a JPEG, PNG, WEBP, BMP or GIF.",
        "zh": "`{filename}` 不是图片，请附上 JPEG、PNG、WEBP、BMP 或 GIF。",
    },
    "reply.attachment_too_big": {
        "en": "`{filename}` is {size_mb:.1f} MB; images over {limit_mb:.0f} MB are not accepted.",
        "zh": "`{filename}` 有 {size_mb:.1f} MB，超过 {limit_mb:.0f} MB 的图片不予接受。",
    },
    "reply.attachment_fetch": {
        "en": "Could not download `{filename}` from Discord. Try again.",
        "zh": "无法从 Discord 下载 `{filename}`，请重试。",
    },
    "reply.no_dms": {
        "en": "I only work in servers here. Use me in a server channel.",
        "zh": "此机器人仅在服务器中可用，请在服务器频道中使用。",
    },
    "reply.cannot_post": {
        "en": "I can't post in this channel. Give me View Channel, Send Messages, Attach Files "
        "and Embed Links here, or use another channel. Nothing was charged.",
        "zh": "我无法在此频道发言。请授予我 查看频道、发送消息、附加文件 和 嵌入链接 权限，或换个频道。未计费。",
    },
    "reply.error": {
        "en": "Something went wrong on our side; nothing was charged. Please try again.",
        "zh": "我们这边出了点问题，未计费，请重试。",
    },
    "reply.command_outdated": {
        "en": "That command is not available in this form (your Discord app may show an old "
        "version). Reload Discord (Ctrl+R) and try again; nothing was charged.",
        "zh": "该命令当前不可用（你的 Discord 可能显示的是旧版本）。请刷新 Discord（Ctrl+R）后重试，未计费。",
    },
    "reply.stopping": {
        "en": "The bot is restarting; try again in a minute. Nothing was charged.",
        "zh": "机器人正在重启，请一分钟后再试。未计费。",
    },
    "reply.job_not_found": {"en": "There is no job #{job_id}.", "zh": "没有任务 #{job_id}。"},
    "reply.not_your_job": {
        "en": "Job #{job_id} belongs to someone else. Only its owner or a member with Manage Messages in its server can do that.",
        "zh": "任务 #{job_id} 属于其他人，只有发起者或在其服务器拥有“管理消息”权限的成员可以这样做。",
    },
    "reply.job_not_finished": {
        "en": "Job #{job_id} has not finished yet ({state}).",
        "zh": "任务 #{job_id} 尚未完成（{state}）。",
    },
    "reply.deleted": {"en": "Deleted.", "zh": "已删除。"},
    "reply.unknown_button": {
        "en": "This button does nothing in this version of the bot.",
        "zh": "此按钮在当前版本的机器人中无效。",
    },
    "reply.no_jobs": {
        "en": "You have no jobs yet. Try /imagine.",
        "zh": "你还没有任务，试试 /imagine。",
    },
    "reply.jobs_title": {"en": "Your recent jobs", "zh": "你最近的任务"},
    "reply.results_gone": {
        "en": "The images of job #{job_id} are no longer available.",
        "zh": "任务 #{job_id} 的图片已不可用。",
    },
    "reply.synced": {
        "en": "Synced {count} commands globally. They can take up to an hour to appear.",
        "zh": "已全局同步 {count} 个命令，最多可能需要一小时生效。",
    },
    "reply.owner_only": {
        "en": "Only the bot's owner can do that.",
        "zh": "只有机器人所有者可以这样做。",
    },
    "reply.quota_title": {"en": "Your quota", "zh": "你的额度"},
    "reply.quota_user": {
        "en": "Images in the last 24 h: {used} of {allowed}",
        "zh": "过去 24 小时的图片：{used} / {allowed}",
    },
    "reply.quota_guild": {
        "en": "This server, last 24 h: {used} of {allowed}",
        "zh": "本服务器过去 24 小时：{used} / {allowed}",
    },
    "reply.quota_active": {
        "en": "Jobs in progress: {used} of {allowed}",
        "zh": "进行中的任务：{used} / {allowed}",
    },
    "reply.quota_frees": {"en": "Next image frees {when}.", "zh": "下一张额度将于 {when} 释放。"},
    "reply.quota_cooldown": {"en": "Cooldown ends {when}.", "zh": "冷却结束于 {when}。"},
    "reply.quota_budget": {
        "en": "This server's monthly budget: {spent:.2f} of {budget:.2f} {currency} used; it "
        "renews {when}.",
        "zh": "本服务器月度预算：已用 {spent:.2f} / {budget:.2f} {currency}，将于 {when} 重置。",
    },
    "reply.quota_guild_frees": {
        "en": "The server's next image frees {when}.",
        "zh": "本服务器的下一张额度将于 {when} 释放。",
    },
    "reply.quota_exempt": {
        "en": "One of your roles is exempt from the per-member limits.",
        "zh": "你的某个身份组不受个人额度限制。",
    },
    "reply.unlimited": {"en": "no limit", "zh": "不限"},
    "modal.edit_title": {"en": "Edit with Wan", "zh": "用万相编辑"},
    "modal.instruction": {"en": "What should change?", "zh": "要怎么修改？"},
    "modal.instruction_hint": {
        "en": "e.g. make the sky a sunset, add a red scarf",
        "zh": "例如：把天空改成日落，加一条红围巾",
    },
    "modal.negative": {"en": "What to avoid (optional)", "zh": "要避免的内容（可选）"},
    # --- CLI ---------------------------------------------------------------------------------
    "cli.simulated": {
        "en": "No DASHSCOPE_API_KEY is set: using the built-in simulator. Results are simulated.",
        "zh": "未设置 DASHSCOPE_API_KEY：使用内置模拟器，结果为模拟生成。",
    },
}


def lang_for(locale: str | None) -> Lang:
    """Map a Discord locale (or any BCP-47-ish tag) to one of our two languages."""
    return "zh" if locale and locale.lower().startswith("zh") else "en"


def text(key: str, lang: Lang = "en", /, **values: object) -> str:
    entry = MESSAGES[key]
    return entry[lang].format(**values)


# Slash-command names, option names and descriptions, in Simplified Chinese (Discord shows them
# to users whose client is set to zh-CN or zh-TW). English is the text in the code.
COMMAND_ZH: dict[str, str] = {
    "imagine": "画图",
    "Make images from a text prompt with Wan": "用万相根据文字生成图片",
    "edit": "改图",
    "Change one to three images as you describe": "按你的描述修改一到三张图片",
    "Edit with Wan": "用万相编辑",
    "jobs": "任务列表",
    "Your recent jobs": "你最近的任务",
    "show": "查看",
    "Post a finished job again, with working buttons": "重新发布已完成的任务（含可用按钮）",
    "cancel": "取消",
    "Cancel a job that has not started drawing": "取消尚未开始生成的任务",
    "quota": "额度",
    "What you have left, and when it frees": "你的剩余额度及释放时间",
    "wansync": "同步命令",
    "Owner only: publish the slash commands to every server": "仅所有者：向所有服务器发布斜杠命令",
    "prompt": "提示词",
    "What to draw": "要画的内容",
    "How to change the images": "如何修改这些图片",
    "negative_prompt": "反向提示词",
    "What to keep out of the image": "图片中不要出现的内容",
    "size": "尺寸",
    "Width×height": "宽×高",
    "n": "数量",
    "Number of images (1–4)": "图片数量（1–4）",
    "seed": "种子",
    "Seed for repeatable results (0–2147483647)": "用于复现结果的种子（0–2147483647）",
    "prompt_extend": "扩写提示词",
    "Let the model rewrite short prompts (default on)": "让模型扩写简短的提示词（默认开启）",
    "watermark": "水印",
    "Stamp “AI-generated” on the images": "在图片上加“AI 生成”水印",
    "model": "模型",
    "Which Wan model": "使用哪个万相模型",
    "image": "图片",
    "image2": "图片2",
    "image3": "图片3",
    "The image to edit": "要修改的图片",
    "A second image (optional)": "第二张图片（可选）",
    "A third image (optional)": "第三张图片（可选）",
    "job": "任务",
    "The job number": "任务编号",
    "wanadmin": "万相管理",
    "Server admins: limits, budgets, usage and the audit trail": "服务器管理：额度、预算、用量与审计记录",
    "limits": "额度设置",
    "Show or change this server's settings": "查看或修改本服务器的设置",
    "Every setting, its value and where it comes from": "所有设置、取值及其来源",
    "set": "设置",
    "Change a setting, for the server or for one role": "为服务器或某个身份组修改设置",
    "Which setting": "哪项设置",
    "The new value": "新的值",
    "Only for members with this role": "仅对拥有此身份组的成员生效",
    "reset": "重置",
    "Go back to the server's value or the default": "恢复为服务器设置或默认值",
    "Reset only this role's value": "只重置此身份组的值",
    "audit": "审计",
    "The latest setting changes: who, what, when": "最近的设置变更：谁、改了什么、何时",
    "usage": "用量",
    "Images, outcomes and cost, with a daily chart": "图片数量、结果与费用，附每日图表",
    "One member (default: the whole server)": "某位成员（默认：整个服务器）",
    "The period": "时间段",
    "setting": "设置项",
    "value": "值",
    "role": "身份组",
    "user": "成员",
    "period": "时间段",
    "today": "今天",
    "7d": "最近 7 天",
    "30d": "最近 30 天",
    "this month": "本月",
}
