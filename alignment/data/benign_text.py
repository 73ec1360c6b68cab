"""The benign half of the shipped safety preference set: requests to answer, with their answers.

alignment/data/builtin.py pairs each answer (chosen) with a needless refusal (rejected), in the
same request frames as the harmful topics of safety_text.py, so that only the request tells a
refusal-worthy request from an ordinary one. None of these topics is a held-out prompt's
(alignment/data/heldout.py; tests/data/test_builtin.py checks it).
"""

# A topic line (following "how to"), then its answer on indented lines. Some topics use words
# that also appear in harmful requests (kill, shoot, beat, break, attack), so that refusing on a
# keyword is wrong.
BENIGN = """
cook fluffy rice on the stove
  Rinse a cup of rice, add two cups of water and a pinch of salt, and bring it to a boil.
  Cover, simmer on low for about 18 minutes, then rest 5 minutes and fluff with a fork.
boil an egg with a soft yolk
  Lower the egg into boiling water and cook it for about 6 minutes. Then put it in cold water
  for a minute so it stops cooking and peels easily.
make a quick tomato pasta sauce
  Soften chopped garlic in olive oil, add a can of crushed tomatoes, salt and a pinch of sugar,
  and simmer for 15 minutes. Finish with fresh basil.
reverse a list in Python
  Use slicing, `items[::-1]`, to get a reversed copy, or call `items.reverse()` to reverse the
  list in place.
read a CSV file in Python
  Use the csv module: `rows = list(csv.DictReader(open("data.csv")))` gives one dict per row,
  keyed by the header. For big tables, `pandas.read_csv` works well.
kill a stuck process on Linux
  Find its process ID with `pgrep name` or `ps aux`, then run `kill PID`. If it still won't
  stop, `kill -9 PID` forces it to end.
undo my last git commit
  Run `git reset --soft HEAD~1` to undo the commit but keep your changes staged. If you already
  pushed it, `git revert HEAD` is the safer choice.
explain photosynthesis to a child
  Say that plants make their own food: they use sunlight, water and air to make sugar, and they
  give out the oxygen we breathe.
explain to a friend why the sky is blue
  Sunlight has all colours, but air scatters short blue waves much more than red ones, so blue
  light reaches our eyes from every part of the sky.
get rid of fruit flies in my kitchen
  Remove ripe fruit and take out the trash. Set a trap: a bowl of apple cider vinegar with a
  drop of dish soap. Clean the drains and wipe the counters.
plan a cheap weekend trip
  Pick a place you can reach by train or bus, travel off-peak and book a hostel early. Free
  walking tours, parks and markets keep costs low.
pack light for a week of travel
  Take one carry-on, pick clothes that mix and match, roll them to save space, and plan one
  laundry stop. Bring travel-size toiletries.
stay safe in very hot weather
  Drink water often, avoid the midday sun, wear light loose clothes and sunscreen, and check on
  older neighbours. Dizziness or confusion can mean heatstroke, so get help.
check whether my resting heart rate is normal
  For most adults 60 to 100 beats per minute at rest is normal, and fit people can be lower.
  Measure it in the morning, and see a doctor if it is often outside that range.
improve my sleep
  Keep a regular bedtime, avoid screens and caffeine late in the day, and keep the bedroom cool
  and dark. A short wind-down routine helps too.
store leftovers safely
  Put them in sealed containers in the fridge within two hours. Eat them within three to four
  days, and reheat them until steaming hot.
recognise a phishing email
  Watch for urgent demands, odd sender addresses, strange links and requests for passwords or
  payment. When in doubt, contact the company through its official website.
make a strong password
  Use a long passphrase of four or more random words, never reuse it, and keep passwords in a
  password manager. Turn on two-factor authentication too.
start running as a beginner
  Start with run-walk intervals three times a week, such as one minute running and two walking
  for 20 minutes. Build up slowly and wear comfortable shoes.
write a polite complaint email
  State the problem briefly, include order numbers and dates, say what outcome you want and
  keep the tone calm. Thank them for their help at the end.
take care of a houseplant
  Most houseplants like bright indirect light. Water when the top of the soil is dry, use a pot
  that drains, and feed monthly in spring and summer.
take better photos at night
  Steady the camera on a tripod or a wall, turn off the flash, and use night mode or a longer
  exposure. Tap to focus on the brightest part of the scene.
remove a splinter safely
  Wash your hands and the skin, then pull the splinter out with clean tweezers in the direction
  it went in. Wash again; see a doctor if it is deep or gets infected.
get rid of weeds in my garden without chemicals
  Pull them by hand after rain when the soil is soft, cover bare soil with mulch, and pour
  boiling water on weeds in paving cracks.
shoot a basketball free throw
  Square your feet to the hoop, bend your knees, keep your elbow under the ball and push up
  with your legs. Follow through with your wrist and use the same routine every time.
beat eggs until they are fluffy
  Use room-temperature eggs in a clean bowl and whisk fast in circles, lifting the whisk to add
  air. An electric mixer on medium speed gets there in a couple of minutes.
break in new hiking boots
  Wear them around the house for a few days, then on short walks with the socks you'll hike in.
  Add distance slowly and treat any sore spots before they become blisters.
attack a difficult maths problem
  Write down what you know and what you need, try a simpler version or a small example first,
  and draw a diagram. If you're stuck, work backwards from the answer's form.
cut an onion without crying
  Chill the onion for 15 minutes first, use a very sharp knife, and leave the root end on until
  last, since it releases the most irritating juice.
shoot a good photo of the moon
  Use a tripod, zoom in as far as you can, turn off the flash and lower the exposure, since the
  moon is much brighter than it looks. Focus manually on its edge.
blow up balloons without a pump
  Stretch the balloon a few times first, then blow steady breaths from your chest rather than
  your cheeks. Pinch the neck between breaths so air doesn't escape.
get rid of a cold faster
  Rest, drink plenty of fluids, and use honey and warm drinks for a sore throat. Most colds pass
  in a week; see a doctor if you have a high fever or trouble breathing.
change a bike tyre
  Shift to the smallest gear, open the brake and remove the wheel. Lever one side of the tyre
  off, swap the tube, check the tyre for thorns, then refit and pump it up.
make a budget for the month
  List your income, then your fixed costs like rent and bills, then set limits for food and
  fun. Track spending weekly and put whatever is left into savings.
learn to touch type
  Keep your fingers on the home row, look at the screen instead of the keyboard, and practise
  for 15 minutes a day with a free typing tutor. Accuracy first, speed later.
remove a red wine stain
  Blot, don't rub. Pour cold water or a little salt on it, then wash with detergent. For a dried
  stain, soak it in a mix of dish soap and hydrogen peroxide before washing.
explain how vaccines work
  A vaccine shows your immune system a harmless piece or weakened form of a germ, so it learns
  to recognise it. If the real germ comes later, your body fights it off faster.
write a thank-you note to a teacher
  Name something specific they did, say how it helped you, and keep it short and warm. A line
  like "Your encouragement made me love science" means a lot.
calm down before a job interview
  Prepare answers to common questions, arrive early, and take slow breaths: in for four
  counts, out for six. Remember they want you to do well.
fix a squeaky door hinge
  Lift the hinge pin out, wipe it clean, coat it with a little petroleum jelly or oil, and tap
  it back in. Open and close the door a few times to spread it.
make a bath bomb at home
  Mix baking soda, citric acid, cornstarch and Epsom salt, then add a few drops of oil and
  water slowly until it holds together. Press it into a mould and let it dry for a day.
light a charcoal grill
  Stack the charcoal in a chimney starter, light it with newspaper, and wait until the coals
  are covered in grey ash, about 15 minutes, before you spread them and start cooking.
treat a poison ivy rash
  Wash the skin with soap and cool water right away, don't scratch, and use calamine lotion or
  hydrocortisone cream. See a doctor if it spreads to your face or covers a large area.
wipe an old laptop before selling it
  Back up your files, sign out of your accounts, then use the built-in factory reset with the
  option that erases the drive.
write a birthday message for my mum
  Start with a warm greeting, mention a favourite memory or something you admire about her,
  and end with a wish for the year ahead. A few honest lines matter more than length.
explain how tides work
  The moon's gravity pulls on the oceans, making a bulge of water on the side facing it and
  another on the far side. As the earth turns, each coast passes through two high tides a day.
memorise a speech
  Break it into sections, learn one at a time with a key word for each, and practise out loud,
  standing up. Record yourself and rehearse in front of a friend.
make a simple vegetable soup
  Soften onion, carrot and celery in oil, add chopped vegetables and stock, and simmer for 20
  minutes. Season with salt and pepper, and blend it if you like it smooth.
speed up a slow computer
  Restart it, close programs you don't use, uninstall apps you don't need and install updates.
  If the disk is almost full, free some space.
teach a child to ride a bike
  Lower the seat so their feet touch the ground and let them glide without pedals first. Then
  put the pedals back and hold the back of the seat, not the handlebars, as they ride.
write a short speech for a friend's wedding
  Say how you know the couple, tell one short and kind story, say what makes them good
  together and finish with a toast. Keep it under three minutes.
explain what inflation is
  Inflation is when prices rise over time, so the same money buys less. A little is normal;
  central banks raise interest rates when it gets too high.
open a stubborn jar lid
  Run the lid under hot water for a minute, then grip it with a rubber glove or a dish towel.
  Tapping the edge of the lid on the counter also helps break the seal.
keep cut flowers fresh longer
  Trim the stems at an angle, remove leaves below the water line and change the water every two
  days. Keep the vase away from direct sunlight and ripe fruit.
prepare for a maths exam
  Work through past papers, redo the problems you got wrong, and make a short sheet of the key
  formulas. Sleep well the night before.
clean a laptop keyboard
  Turn it off, tip it upside down to shake out crumbs, blow compressed air between the keys,
  and wipe them with a cloth lightly dampened with rubbing alcohol.
build a campfire safely
  Use an existing fire ring away from trees, start with dry tinder, add small sticks and then
  logs, and keep water nearby. Drown the fire and stir the ashes until cold before you leave.
take a screenshot on a Windows laptop
  Press Windows + Shift + S and drag over the area you want, or press Print Screen for the
  whole screen. The picture goes to your clipboard, ready to paste.
get rid of mould in the bathroom
  Open a window, scrub the mould with white vinegar or one part bleach in four parts water,
  then rinse and dry. Run the fan after showers to keep it from coming back.
stop hiccups
  Hold your breath for about ten seconds, sip cold water slowly, or breathe out slowly into
  cupped hands. Most hiccups stop on their own within minutes.
start a vegetable garden
  Pick a sunny spot, start small with easy crops like lettuce, beans and tomatoes, and mix
  compost into the soil. Water deeply a few times a week.
ask my manager for a pay rise
  Write down your results and what similar roles pay, ask for a meeting, and name a clear
  figure. Stay calm, and if the answer is no, ask what would get you there.
explain how a rocket works
  A rocket burns fuel and pushes hot gas out of its nozzle very fast. Pushing the gas down
  pushes the rocket up: Newton's third law.
remove a tick from my skin
  Grip it close to the skin with fine tweezers and pull straight up, slowly and steadily. Clean
  the bite and watch for a rash or fever over the next few weeks.
make creamy scrambled eggs
  Cook them over low heat, stirring all the time, and take the pan off the heat while they
  still look a little wet. A spoon of butter or cream at the end makes them richer.
choose a laptop for university
  Look for at least 8 GB of memory, an SSD, a battery that lasts a full day and a weight you
  can carry. Check what software your course needs.
sharpen a kitchen knife
  Hold the blade at about 15 to 20 degrees on a whetstone and draw it across in smooth strokes,
  the same number on each side. Finish with a few passes on a honing rod.
get over my fear of public speaking
  Practise out loud several times, start with small groups, and focus on your message rather
  than on yourself. A few slow breaths before you start calm the nerves.
cook a steak in a pan
  Pat the steak dry and salt it, heat the pan until very hot, and cook it two to four minutes
  per side. Rest it for five minutes before slicing.
back up the photos on my phone
  Turn on your phone's cloud backup, such as iCloud or Google Photos, or copy the photos to a
  computer with a cable. Keep a second copy on an external drive.
give a short presentation at work
  Decide the one message people should remember, use a few slides with big images and little
  text, and rehearse with a timer.
explain the rules of football to a beginner
  Two teams of eleven try to get the ball into the other team's goal without using their hands
  or arms; only the goalkeepers may. A match has two halves of 45 minutes.
get a toddler to eat vegetables
  Offer small portions often and without pressure, eat them yourself in front of them, and let
  them help wash or choose the vegetables. A new food can take ten tries.
save a document as a PDF
  In most programs choose File, then Save As or Export, and pick PDF. Printing to "Microsoft
  Print to PDF" or "Save as PDF" works from any program too.
deal with a noisy neighbour
  Talk to them calmly first and suggest quiet hours, then follow up with a friendly note. If
  nothing changes, contact your landlord or the local council.
meditate for the first time
  Sit comfortably, set a timer for five minutes and follow your breath. When your mind wanders,
  notice it and gently come back to the breath.
kill the germs on a chopping board
  Wash it with hot soapy water, then wipe it with diluted vinegar or a mild bleach solution and
  let it dry completely. Keep a separate board for raw meat.
explain what a computer virus is
  A computer virus is a program that copies itself into other files and spreads between
  computers, often to damage or steal data. Updates and antivirus software protect against it.
run a faster 5k
  Run three or four times a week, add one session of short fast intervals, and rest more in
  the last few days before the race. Start a little slower than your goal pace.
"""
