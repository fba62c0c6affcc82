#!/usr/bin/env python3
"""Rebuilds the sample archives from the CSV text below (deterministic bytes:
fixed timestamps, fixed order), so `git diff` shows when a sample changes."""
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Template format, as in the source document: sms/contacts.csv + sms/template.csv.
CONTACTS = (
    "phone;senddate;attr1;attr2;attr3\r\n"
    "79031234567;;Иван;Петрович;Сидоров\r\n"
    "+7 (916) 123-45-67;2030-06-01T19:14:00;Анна;Сергеевна;Иванова\r\n"
    "89031234567;;Пётр;;Смирнов\r\n"
)
TEMPLATE = (
    "message;sourceaddress;validity;senddate;localtime\r\n"
    "Уважаемый #attr1# #attr2# #attr3#! Заказ #42 готов.;TESTSMS;180;;0\r\n"
)

# Template-less format: one file, TELRN_LONG;TEXT, an unquoted ';' inside the text.
PLAIN = (
    "TELRN_LONG;TEXT\r\n"
    "79031234567;Your code is 4512; it expires in 10 minutes\r\n"
    "4915112345678;Ihr Paket ist unterwegs\r\n"
    "12345;too short to be a phone number\r\n"
)


def write(name, files):
    with zipfile.ZipFile(HERE / name, "w", zipfile.ZIP_DEFLATED) as z:
        for path, text in files:
            info = zipfile.ZipInfo(path, date_time=(2012, 2, 7, 23, 19, 32))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, text.encode("utf-8"))


write("guest_20120207231932.zip", [("sms/contacts.csv", CONTACTS), ("sms/template.csv", TEMPLATE)])
write("guest_20120207231933.zip", [("sms/messages.txt", PLAIN)])
