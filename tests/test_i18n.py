"""Languages: the translated pages in English and Simplified Chinese, by the browser's
Accept-Language, with Django's JavaScript catalog for their scripts' strings."""

import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from maps import services
from maps.services import invite_create, room_create

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}


def _as(client, member):
    session = client.session
    session["members"] = {member.room.public_id: member.pk}
    session.save()


def test_home_is_english_by_default_and_chinese_for_a_chinese_browser():
    english = Client().get("/").content.decode()
    assert '<html lang="en">' in english and "Create room" in english
    chinese = Client().get("/", **ZH).content.decode()
    assert '<html lang="zh-hans">' in chinese
    assert "创建房间" in chinese and "房间名称" in chinese and "你的显示名称" in chinese
    assert "Create room" not in chinese and "Room name" not in chinese
    assert '<script src="/jsi18n/"></script>' in chinese


def test_the_javascript_catalog_carries_the_scripts_strings():
    body = Client().get("/jsi18n/", **ZH).content.decode()
    for text in ("刚刚", "%s 秒前", "%s 分钟前", "已复制"):
        assert json.dumps(text) in body  # the catalog escapes non-ASCII
    # The map page's scripts (main.js, members.js, share.js, watchlinks.js, format.js).
    for text in ("共享我的位置", "正在跟随 %(name)s", "在线", "离线", "还剩 %s 分钟",
                 "还没有链接。", "已重新连接", "邀请链接已复制", "电量 %s%"):
        assert json.dumps(text) in body
    # The marker card, the markers and the map (card.js, markers.js, map.js).
    for text in ("其他浏览器", "充电中", "正在通过手机（%(device)s）共享，%(ago)s", "未共享", "定位时间", "精度", "停止跟随", "直到对方停止",
                 "地图图块无法加载；位置仍会更新。"):
        assert json.dumps(text) in body
    # Places and history (places.js, history.js).
    for text in ("%(member)s 到达了 %(place)s · %(time)s", "任何人", "无法保存提醒：%(error)s",
                 "此范围内没有位置。", "正在加载…", "播放", "暂停"):
        assert json.dumps(text) in body


@pytest.mark.parametrize("path", ["/no/such/page/", "/r/nope/", "/join/nope/",
                                  "/signin/nope/"])
def test_not_found_pages_are_chinese_for_a_chinese_browser(path):
    response = Client().get(path, **ZH)
    body = response.content.decode()
    assert response.status_code == 404
    assert '<html lang="zh-hans">' in body
    assert "前往首页和你的房间" in body and "Go to the home page" not in body


def test_join_not_member_sign_in_and_other_device_pages_in_chinese():
    room, owner = room_create(name="周末", owner_name="Olga")
    invite = invite_create(room=room)
    client = Client()
    join = client.get(invite.path(), **ZH).content.decode()
    assert "加入并打开地图" in join and "Join and open the map" not in join
    stranger = client.get(f"/r/{room.public_id}/", **ZH)
    assert stranger.status_code == 403 and "你不在这个房间里" in stranger.content.decode()
    _as(client, owner)
    other = client.post(f"/r/{room.public_id}/other-device/", {"action": "create"}, **ZH)
    text = other.content.decode()
    assert "生成登录链接" in text and "你的登录链接" in text and "Make a sign-in" not in text
    _link, token = services.signin_link_create(member=owner)
    signin = Client().get(f"/signin/{token}/", **ZH).content.decode()
    assert "以 Olga 的身份登录" in signin


def test_the_watch_gone_page_in_chinese_and_unchanged_in_english():
    english = Client().get("/w/nope/")
    text = english.content.decode()
    assert english.status_code == 404 and '<html lang="en">' in text
    assert "This link has ended" in text and "Ask them for a new one." in text
    page = Client().get("/w/nope/", **ZH).content.decode()
    assert '<html lang="zh-hans">' in page and '<script src="/jsi18n/"></script>' in page
    assert "此链接已结束" in page and "链接已结束 · geoshare" in page
    assert "请向对方要一个新的链接。" in page and "This link has ended" not in page


def test_the_watch_page_in_chinese_and_unchanged_in_english():
    room, owner = room_create(name="周末", owner_name="Olga")
    _link, token = services.watch_link_create(member=owner, minutes=60)
    response = Client().get(f"/w/{token}/")
    english = response.content.decode()
    assert response.status_code == 200 and '<html lang="en">' in english
    for text in ("Shared location", "Waiting for a position…", "Connecting…",
                 "Map of a shared location", "Live location · geoshare"):
        assert text in english
    page = Client().get(f"/w/{token}/", **ZH).content.decode()
    assert '<html lang="zh-hans">' in page
    assert page.index('<script src="/jsi18n/"></script>') < page.index('type="module"')
    for text in ("共享的位置", "正在等待位置…", "正在连接…", "共享位置的地图", "实时位置 · geoshare"):
        assert text in page
    assert "Waiting for a position" not in page and "Shared location" not in page


def test_the_watch_pages_script_strings_are_in_the_catalog():
    body = Client().get("/jsi18n/", **ZH).content.decode()
    for text in ("分享此链接的人已将其撤销。", "最后出现于 %(ago)s", "目前未共享位置", "正在等待位置…",
                 "正在重新连接…", "已结束"):
        assert json.dumps(text) in body


def test_the_map_page_in_chinese_and_unchanged_in_english():
    room, owner = room_create(name="周末", owner_name="Olga")
    client = Client()
    _as(client, owner)
    english = client.get(f"/r/{room.public_id}/").content.decode()
    assert '<html lang="en">' in english
    for text in ("Share my location", "Fit everyone", "Centre on me",
                 "Watch-me links", "Places and alerts", "Manage room", "Connect a phone",
                 "Delete room and erase all data", "Back to live", "Download my data",
                 "aria-label=\"Map of 周末\""):
        assert text in english
    page = client.get(f"/r/{room.public_id}/", **ZH).content.decode()
    assert '<html lang="zh-hans">' in page
    assert page.index('<script src="/jsi18n/"></script>') < page.index('type="module"')
    for text in ("共享我的位置", "显示所有人", "以我为中心", "“看着我”链接",
                 "地点与提醒", "管理房间", "连接手机", "删除房间并清除所有数据", "返回实时",
                 "下载我的数据", "aria-label=\"周末 的地图\"", "直到我停止"):
        assert text in page
    for text in ("Share my location", "Fit everyone", "Manage room", "Back to live"):
        assert text not in page


def test_a_taken_name_is_refused_in_chinese():
    room, _owner = room_create(name="周末", owner_name="Olga")
    invite = invite_create(room=room)
    response = Client().post(invite.path(), {"name": "olga"}, **ZH)
    assert "房间里已经有人叫这个名字了" in response.content.decode()


def test_leaving_and_deleting_say_so_in_chinese_on_the_home_page():
    room, owner = room_create(name="周末", owner_name="Olga")
    client = Client()
    _as(client, owner)
    page = client.post(f"/r/{room.public_id}/leave/", follow=True, **ZH).content.decode()
    assert "房间“周末”及其所有数据已删除。" in page


def test_the_owners_page_messages_in_chinese_and_unchanged_in_english():
    room, owner = room_create(name="周末", owner_name="Olga")
    bo, _key = services.member_create(room=room, name="Bo")
    ana, _key = services.member_create(room=room, name="Ana")
    client = Client()
    _as(client, owner)
    url = f"/r/{room.public_id}/manage/"
    english = client.post(url, {"action": "remove", "member": bo.pk}, follow=True)
    assert "Bo was removed." in english.content.decode()
    page = client.post(url, {"action": "remove", "member": ana.pk}, follow=True, **ZH)
    text = page.content.decode()
    assert "Ana 已被移除。" in text and "was removed" not in text


def test_the_language_switcher_is_on_every_page_and_sets_the_language():
    client = Client()
    home = client.get("/?x=1").content.decode()
    assert 'action="/i18n/setlang/"' in home and 'name="next" value="/?x=1"' in home
    assert '<option value="en" selected lang="en">English</option>' in home
    assert "简体中文" in home
    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    chinese = client.get("/").content.decode()
    assert '<html lang="zh-hans">' in chinese and "创建房间" in chinese
    assert '<option value="zh-hans" selected lang="zh-hans">简体中文</option>' in chinese
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    english = client.get("/", **ZH).content.decode()  # the cookie wins over the browser
    assert '<html lang="en">' in english and "Create room" in english


def test_the_map_page_has_the_language_switcher():
    room, owner = room_create(name="Weekend", owner_name="Olga")
    client = Client()
    _as(client, owner)
    page = client.get(f"/r/{room.public_id}/").content.decode()
    assert 'action="/i18n/setlang/"' in page
    assert f'name="next" value="/r/{room.public_id}/"' in page


def test_the_owners_page_in_chinese_and_unchanged_in_english():
    room, owner = room_create(name="周末", owner_name="Olga")
    invite_create(room=room)
    client = Client()
    _as(client, owner)
    url = f"/r/{room.public_id}/manage/"
    english = client.get(url).content.decode()
    assert '<html lang="en">' in english
    for text in ("Manage “周末”", "Create invite", "Label (only you see it)", "Member invite",
                 "Copy link", "Revoke", "Keep history (days, 0 = live only)",
                 "Everyone in the room, viewers too", "Delete room", "(you)", "Owner"):
        assert text in english
    page = client.get(url, **ZH).content.decode()
    assert '<html lang="zh-hans">' in page and '<script src="/jsi18n/"></script>' in page
    for text in ("管理“周末”", "创建邀请", "标签（只有你能看到）", "成员邀请", "复制链接", "撤销",
                 "保留历史记录（天，0 = 仅实时）", "房间里的所有人，包括查看者", "删除房间",
                 "（你）", "所有者", "← 返回地图"):
        assert text in page
    for text in ("Create invite", "Copy link", "Keep history", "Delete room", "Member invite"):
        assert text not in page


def test_the_connect_page_in_chinese_and_unchanged_in_english():
    room, owner = room_create(name="周末", owner_name="Olga")
    client = Client()
    _as(client, owner)
    url = f"/r/{room.public_id}/connect/"
    english = client.get(url).content.decode()
    assert '<html lang="en">' in english
    assert "Connect a phone to “周末”" in english and "Add a device" in english
    assert "No device yet." in english and "Name of the new device" in english
    page = client.get(url, **ZH).content.decode()
    assert '<html lang="zh-hans">' in page
    for text in ("将手机连接到“周末”", "你的设备", "还没有设备。", "新设备的名称", "添加设备",
                 "<strong>Olga</strong>"):
        assert text in page
    assert "Add a device" not in page and "Your devices" not in page
    added = client.post(url, {"action": "add", "name": "Phone"}, **ZH).content.decode()
    for text in ("“Phone”的密钥", "设备密钥", "新密钥和设置", "尚未上报", "成功了吗？", "移除"):
        assert text in added
    assert "Device key" not in added and "New key and setup" not in added


def test_the_connect_pages_app_setup_in_chinese_and_unchanged_in_english():
    room, owner = room_create(name="周末", owner_name="Olga")
    client = Client()
    _as(client, owner)
    url = f"/r/{room.public_id}/connect/"
    english = client.post(url, {"action": "add", "name": "Car"}).content.decode()
    for text in ("Turn on Tracking on the main screen.", "Server URL", "Device identifier",
                 "OwnTracks opens and sets itself up.",
                 "On the phone, open this setup (scan the one-time QR code at the top",
                 "Receiver endpoint", "shows the time of its last report."):
        assert text in english
    page = client.post(url, {"action": "add", "name": "Phone"}, **ZH).content.decode()
    for text in ("在主屏幕上打开 Tracking。", "服务器 URL", "设备标识符",
                 "用手机相机扫描：OwnTracks 会打开并自动完成设置。",
                 "在手机上打开此设置（用手机相机扫描顶部的一次性二维码），然后复制网址。",
                 "接收端点", "最后一次上报的时间",
                 "Traccar Client (Android, iPhone)"):
        assert text in page
    for text in ("Turn on Tracking", "Server URL", "Receiver endpoint",
                 "shows the time of its last report"):
        assert text not in page
    device = owner.devices.get(name="Phone")
    removed = client.post(url, {"action": "remove", "device": device.pk}, **ZH)
    assert "“Phone”已移除：它的密钥不再有效。" in removed.content.decode()


def _config(page):
    start = page.index('<script id="geoshare-config" type="application/json">')
    start = page.index(">", start) + 1
    return json.loads(page[start:page.index("</script>", start)])


def test_leaflets_own_texts_and_the_tile_credit_are_translated():
    """Issue 25 item 22: Leaflet's zoom titles and attribution prefix, and "contributors"."""
    body = Client().get("/jsi18n/", **ZH).content.decode()
    for text in ("放大", "缩小", "一个用于交互式地图的 JavaScript 库"):
        assert json.dumps(text) in body
    room, owner = room_create(name="周末", owner_name="Olga")
    client = Client()
    _as(client, owner)
    english = _config(client.get(f"/r/{room.public_id}/").content.decode())
    assert english["tileAttribution"].endswith("OpenStreetMap</a> contributors")
    chinese = _config(client.get(f"/r/{room.public_id}/", **ZH).content.decode())
    assert chinese["tileAttribution"].endswith("OpenStreetMap</a> 贡献者")


def test_chinese_texts_have_no_stray_spaces():
    """Issue 25 item 22: "3 人的 16 个位置", "最后位置：刚刚" (no space after "："),
    while English keeps "Last position: 2 min ago"."""
    body = Client().get("/jsi18n/", **ZH).content.decode()
    assert json.dumps("%(who)s的 %(positions)s 个位置；")[1:-1] in body
    assert json.dumps("%(who)s 的")[1:-1] not in body
    room, owner = room_create(name="周末", owner_name="Olga")
    client = Client()
    _as(client, owner)
    url = f"/r/{room.public_id}/manage/"
    page = client.get(url, **ZH).content.decode()
    assert "最后位置：<" in page and "最后位置： " not in page
    english = client.get(url).content.decode()
    assert "Last position: <" in english


@pytest.mark.parametrize("path", ["/", "/join/nope/", "/no/such/page/", "manage", "map",
                                  "watch-gone"])
def test_every_page_names_the_icon_and_favicon_ico_leads_to_it(path):
    """Issue 25 item 22: /favicon.ico was 404 on every page but the map."""
    room, owner = room_create(name="Family", owner_name="Olga")
    client = Client()
    _as(client, owner)
    path = {"manage": f"/r/{room.public_id}/manage/", "map": f"/r/{room.public_id}/",
            "watch-gone": "/w/nope/"}.get(path, path)
    page = client.get(path).content.decode()
    assert '<link rel="icon" href="/static/maps/img/icon.svg" type="image/svg+xml">' in page
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == "/static/maps/img/icon.svg"


def test_an_invites_expiry_is_in_words_on_the_owners_page():
    """Issue 25 item 21: "expires in 3 days", as the README promises (times.js then keeps
    it current in the browser: data-format="in")."""
    room, owner = room_create(name="Family", owner_name="Olga")
    invite_create(room=room, expires_at=timezone.now() + timedelta(days=3, minutes=1),
                  label="Grandma")
    client = Client()
    _as(client, owner)
    url = f"/r/{room.public_id}/manage/"
    english = client.get(url).content.decode()
    assert re.search(r'expires <time data-format="in" datetime="[^"]+">in 3\xa0days</time>',
                     english), english
    chinese = client.get(url, **ZH).content.decode()
    assert re.search(r'到期 <time data-format="in" datetime="[^"]+">3\xa0日后</time>', chinese)
