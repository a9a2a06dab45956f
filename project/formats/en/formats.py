"""English date formats: day-month-year and a 24-hour clock, unambiguous for an international team.

Other languages use Django's own formats (django/conf/locale/<lang>/formats.py).
"""

DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H:i"
MONTH_DAY_FORMAT = "j M"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
TIME_FORMAT = "H:i"
